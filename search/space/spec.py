"""A validated search: `SearchSpec`, and its file `search_spec.yaml` in the experiment folder.

`search.space.spec_loading.load_search_spec` builds a `SearchSpec` from a search-space file; the
driver writes it to `<experiment>/search_spec.yaml` when the search starts
(`write_spec_file`); the export reads it back (`read_spec_file`) to rebuild the report from the
folder alone. One class for both, so the export works on exactly what the driver ran.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detr_core.files.errors import UserInputError
from detr_core.files.yaml_io import dumps_yaml, parse_yaml_mapping
from search.space.budget import asha_rungs
from search.space.distributions import fixed_values_of, log_scale_keys_of, searched_keys_of
from search.store.files import write_text_atomic
from search.store.layout import SPEC_FILE
from search.store.storage import ExperimentPath


@dataclass
class SchedulerSpec:
    """ASHA settings; every budget is in optimizer steps (`time_attr="step"`)."""

    grace_period: int
    reduction_factor: float
    max_t: int

    def rungs(self) -> list[float]:
        """Rung budgets `grace_period * reduction_factor**k` up to `max_t` (as in Ray's ASHA)."""
        return asha_rungs(self.grace_period, self.reduction_factor, self.max_t)


@dataclass
class SearcherSpec:
    """Optuna settings: sampler seed (None: random), random trials before the model takes
    over, the configurations to try first (`search.space.start_points`: partial, in the
    space's terms, so a recipe-relative key resolved per trial holds a factor), and which
    sampler with which options (`search.space.samplers`)."""

    seed: int | None
    n_startup_trials: int
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)
    sampler: str = "tpe"
    sampler_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResourceSpec:
    """What one trial reserves; a fraction of a GPU packs several trials on one card."""

    cpus_per_trial: float
    gpus_per_trial: float


@dataclass
class FinalistsSpec:
    """The finalists stage after the search (`search.results.finalists`): the `top` best
    distinct configurations re-trained with `seeds` fresh seeds each, the winner chosen by
    their mean validation value. Off when `top` is 0."""

    top: int = 0
    seeds: int = 0

    @property
    def on(self) -> bool:
        return self.top > 0 and self.seeds > 0


@dataclass
class SearchSpec:
    """A validated search-space file: what the driver needs to build the Tuner."""

    name: str
    metric: str
    mode: str
    num_samples: int
    max_concurrent: int | None
    scheduler: SchedulerSpec
    searcher: SearcherSpec
    resources: ResourceSpec
    max_failures: int
    base: dict
    space: dict
    source: Path
    base_source: str = "embedded default"
    #: where the recipe's four keys get their values, and the ranges resolved from factors of
    #: the recipe's (`search.space.relative_ranges`)
    recipe: dict = field(default_factory=dict)
    finalists: FinalistsSpec = field(default_factory=FinalistsSpec)

    def searched_keys(self) -> list[str]:
        """Keys drawn from a distribution, in file order."""
        return searched_keys_of(self.space)

    def fixed_values(self) -> dict:
        """Keys given a plain value: the same for every trial."""
        return fixed_values_of(self.space)

    def log_scale_keys(self) -> set[str]:
        """Keys searched on a log scale (plots use a log axis for them)."""
        return log_scale_keys_of(self.space)

    def to_yaml_dict(self) -> dict:
        """Plain dict written as `<experiment>/search_spec.yaml` (see `from_yaml_dict`)."""
        return {
            "name": self.name,
            "source": str(self.source),
            "base_source": self.base_source,
            "experiment": {
                "metric": self.metric,
                "mode": self.mode,
                "num_samples": self.num_samples,
                "max_concurrent": self.max_concurrent,
                "max_t": self.scheduler.max_t,
                "grace_period": self.scheduler.grace_period,
                "reduction_factor": self.scheduler.reduction_factor,
                "searcher_seed": self.searcher.seed,
                "n_startup_trials": self.searcher.n_startup_trials,
                "points_to_evaluate": copy.deepcopy(self.searcher.points_to_evaluate),
                "sampler": self.searcher.sampler,
                "sampler_options": copy.deepcopy(self.searcher.sampler_options),
                "cpus_per_trial": self.resources.cpus_per_trial,
                "gpus_per_trial": self.resources.gpus_per_trial,
                "max_failures": self.max_failures,
                "finalists_top": self.finalists.top,
                "finalists_seeds": self.finalists.seeds,
            },
            "base": copy.deepcopy(self.base),
            "space": copy.deepcopy(self.space),
            "recipe": copy.deepcopy(self.recipe),
        }

    @classmethod
    def from_yaml_dict(cls, raw: dict[str, Any], source: str | Path) -> SearchSpec:
        """The spec `to_yaml_dict` wrote; `UserInputError` naming `source` if it is not one."""
        exp = raw.get("experiment")
        base, space = raw.get("base"), raw.get("space")
        recipe = raw.get("recipe") or {}  # absent in folders written before recipes
        if not all(isinstance(part, dict) for part in (exp, base, space, recipe)):
            raise UserInputError("not a search spec (needs `experiment`, `base` and `space` "
                                 "mappings)", source=source)
        try:
            return cls(
                name=str(raw["name"]), metric=str(exp["metric"]), mode=str(exp["mode"]),
                num_samples=int(exp["num_samples"]), max_concurrent=exp.get("max_concurrent"),
                scheduler=SchedulerSpec(int(exp["grace_period"]),
                                        float(exp["reduction_factor"]), int(exp["max_t"])),
                searcher=SearcherSpec(exp.get("searcher_seed"), int(exp["n_startup_trials"]),
                                      list(exp.get("points_to_evaluate") or []),
                                      str(exp.get("sampler", "tpe")),  # older folders: TPE
                                      dict(exp.get("sampler_options") or {})),
                resources=ResourceSpec(float(exp["cpus_per_trial"]),
                                       float(exp["gpus_per_trial"])),
                max_failures=int(exp.get("max_failures", 0)), base=base, space=space,
                source=Path(str(raw.get("source", source))),
                base_source=str(raw.get("base_source", "embedded default")), recipe=recipe,
                finalists=FinalistsSpec(int(exp.get("finalists_top", 0)),
                                        int(exp.get("finalists_seeds", 0))),
            )
        except KeyError as exc:
            raise UserInputError("missing (written by search/run.py; was the file edited?)",
                                 source=source, key=f"experiment.{exc.args[0]}") from None
        except (TypeError, ValueError) as exc:
            raise UserInputError(f"not a search spec: {exc}", source=source) from None


def write_spec_file(spec: SearchSpec, experiment_dir: ExperimentPath) -> ExperimentPath:
    """`<experiment>/search_spec.yaml`: the resolved search, read back by the export."""
    text = dumps_yaml(spec.to_yaml_dict(),
                      header="Written by search/run.py: the resolved search (read by export.py).")
    return write_text_atomic(experiment_dir / SPEC_FILE, text)


def read_spec_file(experiment_dir: ExperimentPath) -> SearchSpec:
    """The spec of an experiment folder; `UserInputError` when the folder is not one."""
    path = experiment_dir / SPEC_FILE
    if not path.is_file():
        raise UserInputError(f"not a search experiment folder (no {SPEC_FILE}; give the "
                             "folder `search/run.py` wrote, e.g. results/<name>)",
                             source=experiment_dir)
    return SearchSpec.from_yaml_dict(parse_yaml_mapping(path.read_text(encoding="utf-8"), path),
                                     path)
