"""`experiment.searcher.points_to_evaluate`: configurations the searcher tries first.

```yaml
experiment:
  searcher:
    points_to_evaluate:            # each one trial, in this order, before TPE proposes
      - {model.checkpoint: builtin:tiny-shapes-d-fine, training_args.learning_rate: 1.0}
      - {model.checkpoint: builtin:tiny-shapes}          # the other keys are sampled
```

The usual reason: make sure each checkpoint of a searched `model.checkpoint` (or a known good
configuration) is trained once, with its recipe. A point names searched keys of the space, with
values the space can draw; keys left out are sampled as usual. A key stated
`relative_to: recipe` takes a *factor* here too (1.0 = the recipe's own value): it is scaled
here when the search has one model, and per trial when the model is searched.

The points are enqueued in the Optuna study when it is first created (`enqueue_trial`, skipped
if the study already holds that configuration: a resumed or continued search does not repeat
them); they count toward `num_samples` and, as trials Optuna saw, toward TPE's startup trials.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from detr_core.files.errors import UserInputError, describe_value
from search.space.distributions import (
    describe_distribution,
    fits,
    format_value,
    searched_keys_of,
)

KEY = "experiment.searcher.points_to_evaluate"


def check_points(points: Any, space: dict[str, Any], recipe: dict[str, Any], src: str,
                 folder: Path) -> list[dict[str, Any]]:
    """The points as the searcher samples them (factors of recipe-relative keys resolved at
    load made absolute; paths resolved against the space file's `folder`), each checked:
    a mapping of searched keys to values the space draws. One line naming the point and key
    for anything else."""
    if not isinstance(points, list):
        raise UserInputError(f"expected a list of mappings (key: value), got "
                             f"{describe_value(points)}", source=src, key=KEY)
    searched = searched_keys_of(space)
    resolved_at_load = {k: v["recipe_value"] for k, v in (recipe.get("relative") or {}).items()
                        if "recipe_value" in v}
    checked = []
    for index, point in enumerate(points):
        where = f"{KEY}[{index}]"
        if not isinstance(point, dict) or not point:
            raise UserInputError(f"expected a non-empty mapping of searched keys to values, got "
                                 f"{describe_value(point)}", source=src, key=where)
        values: dict[str, Any] = {}
        for key, value in point.items():
            if key not in searched:
                shown = ", ".join(searched) or "none"
                raise UserInputError(f"not a searched key of the space (searched: {shown})",
                                     source=src, key=f"{where}.{key}")
            values[key] = _space_value(value, space[key], resolved_at_load.get(key), folder)
            if not fits(values[key], space[key]):
                factor = " (a factor of the recipe's value)" if key in resolved_at_load else ""
                raise UserInputError(f"{format_value(value)}{factor} is not a value of "
                                     f"{describe_distribution(space[key])}", source=src,
                                     key=f"{where}.{key}")
        checked.append(values)
    return checked


def _space_value(value: Any, entry: dict[str, Any], recipe_value: float | None,
                 folder: Path) -> Any:
    """`value` in the terms of the space `entry`: scaled by a recipe value resolved at load,
    or, for a path among the choices, resolved against the space file's folder."""
    if recipe_value is not None and isinstance(value, int | float) \
            and not isinstance(value, bool):
        return float(f"{value * recipe_value:.12g}")
    if isinstance(value, str) and not fits(value, entry):
        candidate = (folder / value).expanduser().resolve()
        if candidate.exists() and fits(str(candidate), entry):
            return str(candidate)
    return copy.deepcopy(value)


def enqueue_points(study: Any, points: list[dict[str, Any]]) -> int:
    """Enqueue `points` in an Optuna study, in order, skipping any it already holds; how many
    were new."""
    before = len(study.get_trials(deepcopy=False))
    for point in points:
        study.enqueue_trial(point, skip_if_exists=True)
    return len(study.get_trials(deepcopy=False)) - before
