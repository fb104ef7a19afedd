"""`--warm-start EXPERIMENT`: seed a new search's Optuna study with the trials of earlier ones.

A source needs the new search's metric, mode and `max_t`, and its base run wherever neither
space sets a key (but `NEUTRAL_KEYS`), else it is refused (exit 2). Its finished and
ASHA-stopped trials are taken when the new search could have trained exactly that run; the
others are counted by reason. Taken trials are not trained again nor in `num_samples`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from detr_core.config.run_config import get_dotted, touches
from detr_core.files.errors import UserInputError
from search.results.reading import TrialRecord, load_trials
from search.results.warm_trials import (
    SourceSummary,
    WarmStartRecord,
    WarmTrial,
    kept_result,
    read_warm_start_record,
)
from search.space.distributions import (
    describe_distribution,
    fits,
    format_value,
    is_distribution,
    is_number,
    same_value,
)
from search.space.relative_ranges import absolute_values, factor_values, per_trial_keys
from search.space.spec import SearchSpec, read_spec_file
from search.store.storage import ExperimentPath, location
from search.trial.status import ERRORED, status_category

_MISSING = object()


def dotted_value(config: Mapping[str, Any], key: str) -> Any:
    """`a.b.c` of a nested run-config dict; `_MISSING` when any part is absent."""
    return get_dotted(dict(config), key, _MISSING)


def clamped(value: Any, entry: Any) -> Any:
    """A fitting value inside its range's bounds exactly (`fits` allows rounding noise at the
    bounds; Optuna's distributions do not)."""
    if not is_distribution(entry) or not is_number(value) or "choice" in entry:
        return value
    args = next(iter(entry.values()))
    return type(value)(min(max(value, args[0]), args[1]))


def fit_trial(
    trained: Mapping[str, Any], old_base: Mapping[str, Any], old_space: Mapping[str, Any],
    new_base: Mapping[str, Any], new_space: Mapping[str, Any],
) -> tuple[dict[str, Any] | None, tuple[str, Any] | None]:
    """(the trial's values of the new space's keys, None) or (None, (reason, value seen)).
    `trained`: what the trial trained with in its own search (`search.trial.trial_values`)."""
    values: dict[str, Any] = {}
    for key, entry in new_space.items():
        value = trained[key] if key in trained else dotted_value(old_base, key)
        if value is _MISSING:
            return None, (f"`{key}` was not set in that search (its value there is the "
                          "run's default, unknown here)", None)
        if not fits(value, entry):
            return None, (f"`{key}` is not a value of {describe_distribution(entry)}"
                          if is_distribution(entry) else f"`{key}` differs from the new "
                          f"search's fixed value {format_value(entry)}", value)
        values[key] = clamped(value, entry)
    for key in old_space:
        if key in new_space:
            continue
        value = trained.get(key, dotted_value(old_base, key))
        new_value = dotted_value(new_base, key)
        if new_value is _MISSING or not same_value(value, new_value):
            shown = ("the run's default (not known here)" if new_value is _MISSING
                     else format_value(new_value))
            return None, (f"`{key}` is not in the new space and the new base run trains "
                          f"{shown}", None if value is _MISSING else value)
    return values, None


#: Run-config keys that change neither what is trained nor what is measured: they may differ
#: between a source and the new search.
NEUTRAL_KEYS = (
    "seed", "num_threads", "data.synthetic.cache_dir", "evaluation.batch_size",
    "evaluation.test_during_training", "training_args.logging_steps",
    "training_args.logging_strategy", "training_args.logging_first_step",
    "training_args.eval_steps", "training_args.eval_strategy", "training_args.save_steps",
    "training_args.save_strategy", "training_args.save_total_limit", "training_args.output_dir",
    "training_args.report_to", "training_args.run_name", "training_args.disable_tqdm",
    "training_args.dataloader_num_workers", "training_args.metric_for_best_model",
    "training_args.greater_is_better", "training_args.load_best_model_at_end",
)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested run config as `{dotted key: leaf}` (lists and empty mappings are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _first_difference(old: SearchSpec, new: SearchSpec, skip: Sequence[str]) -> str | None:
    """The first base-run key (none under or above one of `skip`) whose value differs, in words."""
    old_flat, new_flat = flatten(old.base), flatten(new.base)
    for key in sorted(set(old_flat) | set(new_flat)):
        there, here = old_flat.get(key, "unset"), new_flat.get(key, "unset")
        if not (touches([key], skip) or touches(skip, [key])) and not same_value(there, here):
            return f"`{key}` is {format_value(there)} there and {format_value(here)} here"
    return None


def search_difference(old: SearchSpec, new: SearchSpec) -> str | None:
    """How a space file differs from the search it would `--resume` (objective, `max_t`,
    space, base run but `NEUTRAL_KEYS`); None for the same search (counts, seeds may change)."""
    if (old.metric, old.mode) != (new.metric, new.mode):
        return f"the metric is {old.metric} ({old.mode}) there and {new.metric} ({new.mode}) here"
    if old.scheduler.max_t != new.scheduler.max_t:
        return f"max_t is {old.scheduler.max_t} there and {new.scheduler.max_t} here"
    for key in sorted(set(old.space) | set(new.space)):
        there, here = old.space.get(key, "not searched"), new.space.get(key, "not searched")
        if there != here:
            return f"space key `{key}` is {_entry_text(there)} there and {_entry_text(here)} here"
    difference = _first_difference(old, new, NEUTRAL_KEYS)
    return f"base key {difference}" if difference else None


def _entry_text(entry: Any) -> str:
    return describe_distribution(entry) if is_distribution(entry) else format_value(entry)


def open_source(where: str, new: SearchSpec) -> tuple[ExperimentPath, SearchSpec,
                                                       list[TrialRecord]]:
    """(folder, spec, trials) of a source whose values the new search can compare with its
    own; `UserInputError` for a refused one."""
    folder = location(where)
    if not folder.is_dir():
        raise UserInputError("no such experiment folder", source=where)
    spec = read_spec_file(folder)
    if (spec.metric, spec.mode) != (new.metric, new.mode):
        raise UserInputError(
            f"that search optimised {spec.metric} ({spec.mode}), this one "
            f"{new.metric} ({new.mode}): its values cannot seed this study", source=where)
    if spec.scheduler.max_t != new.scheduler.max_t:
        raise UserInputError(
            f"its budget differs: experiment max_t {spec.scheduler.max_t} there, "
            f"{new.scheduler.max_t} here", source=where)
    difference = _first_difference(spec, new, [*spec.space, *new.space, *NEUTRAL_KEYS])
    if difference:
        raise UserInputError(f"its base run differs: {difference}; its trials are not "
                             "comparable with this search's", source=where)
    return folder, spec, load_trials(folder, spec, allow_empty=True)


def _reason_of_status(trial: TrialRecord) -> str | None:
    category = status_category(trial.status)
    if category in ("completed", "stopped by ASHA"):  # its best value stands for the config
        return None if trial.best_value is not None else "reported no value of the metric"
    if category == ERRORED:
        return "errored"
    return f"{category} (not a finished or ASHA-stopped trial)"


def take_trials(folder: ExperimentPath, spec: SearchSpec, trials: Sequence[TrialRecord],
                new: SearchSpec) -> tuple[SourceSummary, list[WarmTrial]]:
    """The trials of one source that fit the new search, and what was left out and why."""
    taken: list[WarmTrial] = []
    reasons: Counter[str] = Counter()
    seen: dict[str, list[str]] = {}
    for trial in trials:
        reason = _reason_of_status(trial)
        if reason is None:
            # per-trial keys compared as factors of its own model's recipe, as the space samples
            trained = factor_values(trial.params, spec.base, per_trial_keys(new.recipe))
            values, misfit = fit_trial(trained, spec.base, spec.space, new.base, new.space)
            if misfit is not None:
                reason, value = misfit
                if value is not None:
                    seen.setdefault(reason, []).append(format_value(value))
        if reason is not None:  # else fit_trial gave its values
            reasons[reason] += 1
            continue
        taken.append(WarmTrial(
            source=str(folder), trial_id=trial.trial_id, trial_dir=str(trial.path),
            params=absolute_values(values, new.base, new.recipe), sampled=values,
            source_params=dict(trial.params), status=trial.status,
            best_value=trial.best_value, best_step=trial.best_step,
            pruned=status_category(trial.status) == "stopped by ASHA",
            results=[kept_result(r) for r in trial.results],
        ))
    left_out = {}
    for reason, count in reasons.items():
        values = sorted(set(seen.get(reason, [])))
        listed = ", ".join(values[:6]) + (", ..." if len(values) > 6 else "")
        shown = f"; its value{'s' if len(values) > 1 else ''}: {listed}" if values else ""
        left_out[reason + shown] = count
    summary = SourceSummary(source=str(folder), name=spec.name, trials=len(trials),
                            taken=len(taken), left_out=left_out)
    earlier = read_warm_start_record(folder)
    if earlier is not None and earlier.trials:
        summary.notes.append(
            f"it was itself warm-started with {len(earlier.trials)} trial(s) of "
            f"{', '.join(s.source for s in earlier.sources)}; give those with --warm-start "
            "to use their trials too")
    return summary, taken


def plan_warm_start(new: SearchSpec, sources: Sequence[str]) -> WarmStartRecord | None:
    """The trials of `sources` the new search starts from (None without sources). Every
    source is checked before any is used: a refused one raises `UserInputError`."""
    if not sources:
        return None
    opened: dict[str, tuple[ExperimentPath, SearchSpec, list[TrialRecord]]] = {}
    for where in sources:
        folder, spec, trials = open_source(where, new)
        opened.setdefault(str(folder), (folder, spec, trials))  # a source given twice counts once
    record = WarmStartRecord(sources=[], trials=[])
    for folder, spec, trials in opened.values():
        summary, taken = take_trials(folder, spec, trials, new)
        record.sources.append(summary)
        record.trials += taken
    return record


def startup_note(record: WarmStartRecord | None, n_startup_trials: int) -> str:
    """How the warm-start trials change the random startup trials, for the plan's searcher line."""
    if record is None:
        return f"{n_startup_trials} random startup trials"
    given = len(record.trials)
    left = max(0, n_startup_trials - given)
    return (f"{left} random startup trials ({given} warm-start trial(s) count toward "
            f"{n_startup_trials})")
