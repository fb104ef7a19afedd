"""Search-space files: YAML -> validated `SearchSpec` (see README "Search-space files").

A search-space file says what to search, over which base run, and how:

```yaml
experiment:                      # every key optional
  name: iou                      # default: the file's stem; results go to <storage>/<name>
  metric: eval_loss_bbox         # one of REPORTED_METRICS (default eval_loss_bbox)
  mode: min                      # min | max (default: the metric's own, max for mAP/recall)
  num_samples: 8                 # trials (default 8)
  max_concurrent: 2              # trials at a time (ConcurrencyLimiter); default: as many as fit
  scheduler:                     # ASHA; every budget is in optimizer steps (time_attr = step)
    grace_period: 300            # first rung; default: the base's logging_steps (first eval)
    reduction_factor: 3          # keep the best 1/3 at each rung (default 3)
    max_t: 1500                  # cap per trial; default: the longest trial's steps, estimated
                                 # from the base (required when it trains on COCO files)
  searcher:                      # Optuna
    sampler: tpe                 # tpe (default) | gp | random | qmc | cmaes (search.space.samplers)
    sampler_options: {}          # the sampler's own options, e.g. {multivariate: true}
    seed: 0                      # default 0; null = a different search each time
    n_startup_trials: 4          # random trials first; default min(10, ceil(num_samples/2))
    points_to_evaluate:          # tried first, in order (search.space.start_points)
      - {iou_loss: ciou}         # keys left out are sampled
  resources: {cpus_per_trial: 1, gpus_per_trial: 0}   # gpus may be fractional: 0.5 = 2 per GPU
  max_failures: 0                # retries of an errored trial from its last checkpoint (-1: no cap)
  finalists: {top: 3, seeds: 3}  # optional: the 3 best configurations, 3 fresh seeds each, after
                                 # the search; winner by mean value (search.results.finalists)
base: ../configs/run.yaml        # detr_core run config: a path (relative to THIS file) or an
                                 # inline mapping; default: the embedded default run
base_overrides:                  # optional, applied over `base`; dotted or nested keys
  training_args.num_train_epochs: 4
space:                           # dotted keys of the run config
  iou_loss: {choice: [giou, diou, ciou]}
  training_args.learning_rate: {loguniform: [1.0e-5, 1.0e-3]}
  training_args.warmup_steps: {uniform: [0.0, 0.2]}       # < 1 is a ratio, >= 1 steps
  training_args.num_train_epochs: {randint: [2, 6]}       # 2, 3, 4, 5 or 6
  training_args.per_device_train_batch_size: {qrandint: [4, 16, 4]}   # 4, 8, 12 or 16
  training_args.weight_decay: {quniform: [0.0, 0.1, 0.01]}
  freeze_backbone: {choice: [true, false]}
  seed: 3                        # a plain value is fixed for every trial
```

Distributions: see `search.space.distributions`. The four values a checkpoint's fine-tuning
recipe fills (`training_args.learning_rate`, `backbone_lr_ratio`, `training_args.weight_decay`,
`training_args.max_grad_norm`) may be stated as factors of the recipe's,
`{loguniform: [0.25, 2.0], relative_to: recipe}`, and the file then fits any checkpoint: they
are resolved here, against the base run's model (`search.space.relative_ranges`), or per
trial against each trial's own model when a model key is searched
(`search.space.per_trial_recipes`).

Searchable keys: every field of the detr_core run config (`iou_loss`, `freeze_backbone`,
`seed`, `model.*`, `augmentation.*`, `evaluation.*`,
`model.config_overrides.<field of the family config>`) and any
`transformers.TrainingArguments` field as `training_args.<field>` (plus `warmup_ratio`).

Keys that exclude each other (`detr_core.config.config_keys.EXCLUSIVE_KEYS`: `model.preset` /
`model.checkpoint`, `data.synthetic` / `data.train|val|test`, `training_args.warmup_steps` /
`warmup_ratio`): setting one in `base_overrides` or `space` drops the other from the base.
Relative paths in `base_overrides` and in fixed or choice values of path keys are resolved
against the space file's folder.

Everything is checked before Ray starts: unknown keys, bad bounds, wrong value types. The run
config is built and validated with every choice value and both ends of every range, so a value
the run cannot take (`iou_loss: {choice: [giou, xiou]}`) fails here, as one line naming the
file and the key, not in a trial.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from detr_core.config.config_keys import EXCLUSIVE_KEYS, is_section, touches
from detr_core.config.config_paths import resolve_paths
from detr_core.config.run_config import (
    DEFAULT_CONFIG_PATH,
    apply_overrides,
    load_run_config,
    run_config_from_dict,
    run_config_to_dict,
)
from detr_core.files.errors import UserInputError, describe_value
from detr_core.files.yaml_io import load_yaml_mapping
from search.space.distributions import candidate_values, fixed_values_of, searched_keys_of
from search.space.experiment_section import as_mapping, build_spec, experiment_with_overrides
from search.space.relative_ranges import resolve_relative, split_relative
from search.space.space_section import parse_space
from search.space.spec import SearchSpec
from search.space.start_points import check_points

TOP_LEVEL_KEYS = ("experiment", "base", "base_overrides", "space")


def load_search_spec(path: str | Path, overrides: dict | None = None) -> SearchSpec:
    """Read, validate and resolve a search-space file; `overrides` come from the CLI.

    `overrides` keys: name, num_samples, max_concurrent, cpus_per_trial, gpus_per_trial, seed
    (the searcher's), max_failures; a None value means "not given". Raises `UserInputError`
    (one line: `<file>: <key>: <problem>`) for anything wrong; starts nothing.
    """
    path = Path(path)
    src = str(path)
    raw = load_yaml_mapping(path)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise UserInputError(f"unknown top-level key (known: {', '.join(TOP_LEVEL_KEYS)})",
                                 source=src, key=str(key))
    folder = path.resolve().parent
    space, relative = split_relative(raw.get("space"), src)
    space = parse_space(space, src, folder)
    base, base_source = _load_base(raw.get("base"), raw.get("base_overrides"), src, folder)
    base = drop_excluded(base, space.keys())
    # the rest first: the recipe is read from the base with the space's fixed values
    _validate_space_values(base, {k: v for k, v in space.items() if k not in relative}, src)
    space, recipe, resolved = resolve_relative(space, relative, base, _overridden(raw, src),
                                               src)
    for absolute in resolved:  # the resolved ranges, as absolute values (one per model)
        _validate_space_values(base, absolute, src)
    experiment = experiment_with_overrides(raw.get("experiment"), overrides, src)
    spec = build_spec(experiment, base, space, path, base_source)
    points = check_points(spec.searcher.points_to_evaluate, space, recipe, src, folder)
    if len(points) > spec.num_samples:
        raise UserInputError(f"{len(points)} points to evaluate, but the search runs "
                             f"{spec.num_samples} trials (num_samples)", source=src,
                             key="experiment.searcher.points_to_evaluate")
    searcher = dataclasses.replace(spec.searcher, points_to_evaluate=points)
    return dataclasses.replace(spec, recipe=recipe, searcher=searcher)


def _overridden(raw: dict[str, Any], src: str) -> set[str]:
    """The dotted keys the file's `base_overrides` sets (already checked by `_load_base`)."""
    overrides = as_mapping(raw.get("base_overrides"), src, "base_overrides")
    return set(_flatten_overrides(overrides, src)) if overrides else set()


def _validated(raw: dict[str, Any], src: str, key_prefix: str) -> None:
    """Validate a run-config dict; an error names the space file and `<key_prefix>.<key>`."""
    try:
        run_config_from_dict(raw)
    except UserInputError as exc:
        raise exc.relocated(src, key_prefix) from None


def _load_base(
    base: Any, overrides: Any, src: str, folder: Path
) -> tuple[dict[str, Any], str]:
    """The complete base run config as a dict: loaded, overridden, validated, paths absolute."""
    if base is None:
        raw = run_config_to_dict(load_run_config(DEFAULT_CONFIG_PATH))
        base_source = "embedded default"
    elif isinstance(base, str):
        base_path = Path(base).expanduser()
        base_path = (base_path if base_path.is_absolute() else folder / base_path).resolve()
        if not base_path.is_file():
            raise UserInputError(f"file not found: {base_path}", source=src, key="base")
        raw = run_config_to_dict(load_run_config(base_path))  # its own errors name its file
        base_source = str(base_path)
    elif isinstance(base, dict):
        raw = copy.deepcopy(base)
        _validated(raw, src, "base")
        base_source = "inline"
    else:
        raise UserInputError(f"expected a path or a mapping, got {describe_value(base)}",
                             source=src, key="base")
    overrides = as_mapping(overrides, src, "base_overrides")
    if overrides:
        flat = _flatten_overrides(overrides, src, sections_set=_sections_set(raw))
        raw = drop_excluded(raw, flat.keys())
        raw = apply_overrides(raw, flat)
        _validated(raw, src, "base_overrides")
    # A base file's paths are absolute already; inline and override paths are relative to
    # the space file.
    cfg = resolve_paths(run_config_from_dict(raw, src), folder)
    return run_config_to_dict(cfg), base_source


def _sections_set(raw: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of the mappings `raw` has (`training_args`, `data.synthetic`, ...)."""
    found: set[str] = set()
    for key, value in raw.items():
        if isinstance(value, dict):
            found.add(prefix + key)
            found |= _sections_set(value, f"{prefix}{key}.")
    return found


def _flatten_overrides(overrides: dict, src: str, prefix: str = "",
                       sections_set: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """Nested and dotted override keys -> {dotted leaf key: value}.

    Mappings are merged key by key where the run config has a section (a dataclass, or a free
    mapping such as `training_args` and `model.config_overrides`); anything else is replaced.
    An empty mapping turns on an optional section the base leaves unset (`ema: {}`: averaged
    weights with their defaults) and changes nothing in one it has.
    """
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if not isinstance(key, str) or not key:
            raise UserInputError("keys must be non-empty strings", source=src,
                                 key=f"base_overrides.{prefix}{key}")
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and is_section(dotted):
            if not value and dotted not in sections_set:
                flat[dotted] = {}
            flat.update(_flatten_overrides(value, src, dotted + ".", sections_set))
        else:
            flat[dotted] = value
    return flat


def drop_excluded(raw: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """Remove from `raw` the counterparts of keys being set (model.preset vs checkpoint...)."""
    keys = list(keys)
    raw = copy.deepcopy(raw)
    for side_a, side_b in EXCLUSIVE_KEYS:
        for mine, other in ((side_a, side_b), (side_b, side_a)):
            if touches(keys, mine) and not touches(keys, other):
                for dotted in other:
                    _pop_dotted(raw, dotted)
    return raw


def _pop_dotted(raw: dict[str, Any], dotted: str) -> None:
    node: Any = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def _validate_space_values(base: dict[str, Any], space: dict[str, Any], src: str) -> None:
    """Build and validate the run config with each fixed value, every choice and both ends."""
    fixed = fixed_values_of(space)
    for key, value in fixed.items():
        _check_value(base, {key: value}, src, key, value)
    first: dict[str, Any] = {}
    for key in searched_keys_of(space):
        values = candidate_values(space[key])
        for value in values:
            _check_value(base, {**fixed, key: value}, src, key, value)
        first[key] = values[0]
    try:
        run_config_from_dict(apply_overrides(base, {**fixed, **first}))
    except UserInputError as exc:
        raise UserInputError("the first values of the space together give an invalid run "
                             f"config ({exc.key or 'run config'}: {exc.problem})", source=src,
                             key="space") from None


def _check_value(base: dict, params: dict, src: str, key: str, value: Any) -> None:
    """Validate `base` with `params` set; blame the space key the error is about, if any."""
    try:
        run_config_from_dict(apply_overrides(base, params))
    except UserInputError as exc:
        culprit = next((k for k in params if exc.key == k
                        or (exc.key or "").startswith(k + ".")), key)
        value = params.get(culprit, value)
        detail = exc.problem if exc.key in (None, culprit, "training_args") else \
            f"{exc.key}: {exc.problem}"
        raise UserInputError(f"value {value!r} is not valid here: {detail}", source=src,
                             key=f"space.{culprit}") from None
