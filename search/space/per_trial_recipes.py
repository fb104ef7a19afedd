"""Recipe-relative values resolved per trial, for a search whose model is itself searched.

`relative_ranges` resolves `{loguniform: [0.25, 2.0], relative_to: recipe}` once, against the
base run's model, when the whole search fine-tunes one model. When a model key is searched
(`model.checkpoint: {choice: [builtin:tiny-shapes, builtin:tiny-shapes-d-fine]}`), each trial's
model has its own recipe, 2-40x apart between families. Then:

- the space keeps the *factors*: Optuna samples them and TPE models them, and a factor means
  the same thing whichever checkpoint a trial drew (1.0 = that checkpoint's recipe);
- `SearchSpec.recipe["per_trial"]` lists those keys, and `["relative"][key]["per_model"]`
  what each candidate model resolves them to (for the plan and `--dry-run`);
- `absolute_values` turns a trial's factors into the values it trains with, against its own
  model's recipe. `search.trial.trial_values` calls it, so the trainable, best_config.yaml,
  trials.csv, TensorBoard and the report all hold absolute values;
- `factor_values` is the way back, for what compares trials in the space's own terms: warm
  start (an earlier trial fits if its factor is in range) and the importances.

Every candidate model (each combination of the searched model keys' choices) is checked when
the space loads: it must have a recipe, with a non-zero value of each relative key, and its
scaled range must be a valid range of that key; a failure names the key and the model.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from typing import Any

from detr_core.config.run_config import apply_overrides, run_config_from_dict
from detr_core.files.errors import UserInputError
from detr_core.model.recipes import recipe_for
from search.space.distributions import fixed_values_of, searched_keys_of

#: Searched keys that change the model, hence its recipe, from trial to trial.
MODEL_KEYS = ("model", "model.checkpoint", "model.preset", "model.family")
#: A factor recovered from an absolute value is rounded to this many significant digits (the
#: absolute value was rounded to 12 when it was made from the factor).
FACTOR_DIGITS = 10

_recipe_cache: dict[str, Any] = {}


def searched_model_keys(space: Mapping[str, Any]) -> list[str]:
    """The searched keys of `space` that change the model (`MODEL_KEYS`), in space order."""
    return [k for k in searched_keys_of(dict(space)) if k in MODEL_KEYS]


def per_trial_keys(recipe: Mapping[str, Any] | None) -> list[str]:
    """The keys a search resolves per trial (empty for a search with one model)."""
    return list((recipe or {}).get("per_trial") or [])


def candidate_models(space: Mapping[str, Any], src: str) -> list[dict[str, Any]]:
    """Every combination of the searched model keys' values (they must be `choice`s)."""
    keys = searched_model_keys(space)
    options = []
    for key in keys:
        kind, args = next(iter(space[key].items()))
        if kind != "choice":
            raise UserInputError(f"relative_to: recipe with a searched model needs {key} to be "
                                 f"a choice (each model's recipe is read when the space "
                                 f"loads), got {kind}", source=src, key=f"space.{key}")
        options.append(args)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*options)]


def resolve_per_trial(space: dict[str, Any], relative: list[str], base: dict[str, Any],
                      src: str, scale: Any, words: Any) -> tuple[dict[str, Any],
                                                                 list[dict[str, Any]]]:
    """(the `SearchSpec.recipe` entries, one resolved space per candidate model).

    `space` holds factors in its `relative` keys; `scale(factors, value, name, src, key)`
    scales and checks one distribution and `words(model_cfg)` names a model (both from
    `relative_ranges`, passed in to keep one definition). The resolved spaces (model keys
    fixed to the candidate, relative keys absolute) are for the caller to validate as any
    space is. Refused, naming the key: a candidate without a recipe or with a 0 value.
    """
    fixed = fixed_values_of(space)
    record: dict[str, Any] = {"per_trial": list(relative), "relative": {
        key: {"factors": copy.deepcopy(space[key]), "per_model": []} for key in relative}}
    resolved_spaces = []
    for candidate in candidate_models(space, src):
        try:
            model = run_config_from_dict(apply_overrides(base, {**fixed, **candidate})).model
            recipe = recipe_for(model)
        except UserInputError as exc:
            where = f"{exc.source}: " if exc.source else ""
            raise UserInputError(f"relative_to: recipe: {where}{exc.problem}", source=src,
                                 key=f"space.{relative[0]}") from None
        if recipe is None:
            raise UserInputError(
                f"relative_to: recipe: the searched model {words(model)} has no recipe (no "
                "recipe.json in its folder, and its family has no published one); give "
                "absolute values, or list only models with a recipe", source=src,
                key=f"space.{relative[0]}")
        resolved = {**space, **candidate}
        for key in relative:
            dist = scale(space[key], recipe.value(key), recipe.name, src, key)
            resolved[key] = dist
            record["relative"][key]["per_model"].append({
                "model": words(model), "recipe": recipe.name,
                "recipe_value": recipe.value(key), "resolved": copy.deepcopy(dist)})
        resolved_spaces.append(resolved)
    return record, resolved_spaces




def trial_recipe(base: Mapping[str, Any], values: Mapping[str, Any], keys: list[str]) -> Any:
    """The recipe of the model a trial with `values` trains (its factors left out); cached
    per model section, since every console line and every report row asks for it."""
    raw = apply_overrides(dict(base), {k: v for k, v in values.items() if k not in keys})
    cache_key = json.dumps(raw.get("model"), sort_keys=True, default=str)
    if cache_key not in _recipe_cache:
        model = run_config_from_dict(raw).model
        _recipe_cache[cache_key] = recipe_for(model)
    recipe = _recipe_cache[cache_key]
    if recipe is None:  # the space was checked when it loaded: the model changed since
        raise UserInputError(f"the trial's model ({raw.get('model')}) has no recipe to resolve "
                             f"{', '.join(keys)} against")
    return recipe


def absolute_values(values: Mapping[str, Any], base: Mapping[str, Any] | None,
                    recipe: Mapping[str, Any] | None) -> dict[str, Any]:
    """A trial's values with each per-trial factor times its own model's recipe value."""
    keys = [k for k in per_trial_keys(recipe) if k in values]
    if not keys:
        return dict(values)
    if base is None:
        raise ValueError("resolving recipe-relative values per trial needs the base run")
    own = trial_recipe(base, values, keys)
    return {**values, **{k: _round(values[k] * own.value(k), 12) for k in keys}}


def factor_values(values: Mapping[str, Any], base: Mapping[str, Any],
                  keys: list[str]) -> dict[str, Any]:
    """`values` (absolute, as a trial trained with them) with `keys` as factors of the recipe
    of the trial's own model: the inverse of `absolute_values`."""
    keys = [k for k in keys if k in values and isinstance(values[k], int | float)]
    if not keys:
        return dict(values)
    own = trial_recipe(base, values, keys)
    return {**values, **{k: _round(values[k] / own.value(k), FACTOR_DIGITS) for k in keys}}


def _round(number: float, digits: int) -> float:
    return float(f"{number:.{digits}g}")


def per_model_note(entry: Mapping[str, Any], format_number: Any) -> str:
    """`builtin:a 0.002 -> 5e-4-4e-3; builtin:b 0.001 -> ...` for the plan's recipe lines."""
    parts = []
    for row in entry.get("per_model") or []:
        kind, args = next(iter(row["resolved"].items()))
        shown = (" | ".join(format_number(a) for a in args) if kind == "choice"
                 else f"{format_number(args[0])}-{format_number(args[1])}")
        parts.append(f"{row['model']}: {format_number(row['recipe_value'])} -> {shown}")
    return "; ".join(parts)
