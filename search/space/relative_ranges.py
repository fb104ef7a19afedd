"""Ranges relative to the checkpoint's recipe: `{loguniform: [0.25, 2.0], relative_to: recipe}`.

A learning rate that suits one checkpoint is 5-40x off for another, so the `RECIPE_KEYS` may be
given as factors of the recipe's own value. With one model they are resolved when the space
loads, so Optuna, the trials and every result hold absolute values. With a searched model
(`MODEL_KEYS`) the space keeps the factors (1.0 = the drawn model's recipe, which TPE can
model): `absolute_values` resolves them per trial, `factor_values` is the way back.
`SearchSpec.recipe` records what was resolved; `recipe_lines` puts it in words for `--dry-run`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from collections.abc import Mapping
from typing import Any

from detr_core.config.run_config import apply_overrides, get_dotted, key_type, run_config_from_dict
from detr_core.files.errors import UserInputError
from detr_core.model.recipes import RECIPE_KEYS, recipe_for
from search.space.distributions import (
    DISTRIBUTIONS,
    INT_DISTRIBUTIONS,
    check_distribution,
    fixed_values_of,
    format_number,
    is_number,
    searched_keys_of,
)

#: Searched keys that change the model, hence its recipe, from trial to trial.
MODEL_KEYS = ("model", "model.checkpoint", "model.preset", "model.family")
RELATIVE_KEY = "relative_to"
#: Significant digits of resolved values (0.25 * 0.002 stays 5e-4), and of factors recovered
#: from them (fewer: the absolute value was rounded already).
SIGNIFICANT_DIGITS = 12
FACTOR_DIGITS = 10

_recipe_cache: dict[str, Any] = {}


def searched_model_keys(space: Mapping[str, Any]) -> list[str]:
    """The searched keys of `space` that change the model (`MODEL_KEYS`), in space order."""
    return [k for k in searched_keys_of(dict(space)) if k in MODEL_KEYS]


def per_trial_keys(recipe: Mapping[str, Any] | None) -> list[str]:
    """The keys a search resolves per trial (empty for a search with one model)."""
    return list((recipe or {}).get("per_trial") or [])


def _round(number: float, digits: int) -> float:
    return float(f"{number:.{digits}g}")


def _refused(src: str, key: str, problem: str) -> UserInputError:
    return UserInputError(problem, source=src, key=f"space.{key}")


def split_relative(space: Any, src: str) -> tuple[Any, list[str]]:
    """`space:` with `relative_to` taken off its entries (`recipe`, on one of `RECIPE_KEYS`,
    next to a distribution: the rest is checked by `parse_space`), and the keys that had it."""
    if not isinstance(space, dict):
        return space, []
    result: dict[Any, Any] = {}
    relative: list[str] = []
    for key, value in space.items():
        if not (isinstance(key, str) and isinstance(value, dict) and RELATIVE_KEY in value):
            result[key] = value
            continue
        target = value[RELATIVE_KEY]
        if target != "recipe":
            raise _refused(src, key, f"relative_to takes recipe (the checkpoint's fine-tuning "
                                     f"recipe), got {target!r}")
        if key not in RECIPE_KEYS:
            raise _refused(src, key, f"relative_to: recipe applies to {', '.join(RECIPE_KEYS)}")
        rest = {k: v for k, v in value.items() if k != RELATIVE_KEY}
        if not any(k in DISTRIBUTIONS for k in rest):
            raise _refused(src, key, "relative_to: recipe goes with a range or a choice of "
                                     "factors, e.g. {loguniform: [0.25, 2.0], relative_to: recipe}")
        result[key] = rest
        relative.append(key)
    return result, relative


def resolve_relative(space: dict[str, Any], relative: list[str], base: dict[str, Any],
                     overridden: set[str], src: str
                     ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(the space as trials sample it, the `SearchSpec.recipe` record, the absolute spaces to
    check: one per candidate model). `relative` entries of the parsed `space` hold factors;
    `overridden`: the keys `base_overrides` sets."""
    record: dict[str, Any] = {"keys": recipe_key_origins(space, base, overridden)}
    if not relative:
        return space, record, []
    fixed = fixed_values_of(space)
    model_keys = searched_model_keys(space)
    for key in model_keys:
        kind = next(iter(space[key]))
        if kind != "choice":
            raise UserInputError(f"relative_to: recipe with a searched model needs {key} to be "
                                 f"a choice (each model's recipe is read when the space "
                                 f"loads), got {kind}", source=src, key=f"space.{key}")
    resolved = []  # (model, recipe, space) per candidate model: just one without model keys
    for combo in itertools.product(*(space[key]["choice"] for key in model_keys)):
        candidate = dict(zip(model_keys, combo, strict=True))
        model, recipe = _model_recipe(base, {**fixed, **candidate}, src, relative[0],
                                      searched=bool(model_keys))
        one = {**space, **candidate}
        for key in relative:
            one[key] = _scaled(space[key], recipe.value(key), recipe.name, src, key)
        resolved.append((model, recipe, one))
    if not model_keys:
        _, recipe, one = resolved[0]
        record.update(name=recipe.name, source=recipe.source, relative={key: {
            "factors": copy.deepcopy(space[key]), "recipe_value": recipe.value(key),
            "resolved": copy.deepcopy(one[key])} for key in relative})
        return one, record, [one]
    record.update(per_trial=list(relative), relative={key: {
        "factors": copy.deepcopy(space[key]),
        "per_model": [{"model": model_words(model), "recipe": recipe.name,
                       "recipe_value": recipe.value(key), "resolved": copy.deepcopy(one[key])}
                      for model, recipe, one in resolved]} for key in relative})
    return space, record, [one for _, _, one in resolved]


def recipe_key_origins(space: dict[str, Any], base: dict[str, Any],
                       overridden: set[str]) -> dict[str, str]:
    """Where each of `RECIPE_KEYS` gets its value: the space, base_overrides, the base run or
    (`recipe`) the trial's model's recipe."""
    searched, fixed = set(searched_keys_of(space)), fixed_values_of(space)
    origins: dict[str, str] = {}
    for key in RECIPE_KEYS:
        if key in searched:
            origins[key] = "space (searched)"
        elif key in fixed:
            origins[key] = "space (fixed)"
        elif key in overridden:
            origins[key] = "space (base_overrides)"
        elif get_dotted(base, key) is not None:  # the raw base: its model may be searched
            origins[key] = "run"
        else:
            origins[key] = "recipe"
    return origins


def _model_recipe(base: dict[str, Any], values: dict[str, Any], src: str, key: str,
                  searched: bool) -> tuple[Any, Any]:
    """(model, recipe) of the base run with `values` set; refused without a recipe."""
    try:
        model = run_config_from_dict(apply_overrides(base, values)).model
        recipe = recipe_for(model)
    except UserInputError as exc:
        where = f"{exc.source}: " if exc.source else ""
        raise _refused(src, key, f"relative_to: recipe: {where}{exc.problem}") from None
    if recipe is None:
        what = (f"the searched model {model_words(model)}" if searched
                else f"the base model ({model_words(model)})")
        raise _refused(src, key, f"relative_to: recipe: {what} has no recipe (no recipe.json "
                       "in its folder, and its family has no published one); give absolute "
                       "values" + (", or list only models with a recipe" if searched else ""))
    return model, recipe


def model_words(model: Any) -> str:
    """The model of a run in a few words: its checkpoint, else its preset and family."""
    if model.checkpoint is not None:
        return f"checkpoint {model.checkpoint}"
    return f"preset {model.preset}, family {model.family or 'detr'}"


def _scaled(dist: dict, value: float, name: str, src: str, key: str) -> dict:
    """`dist` (factors) times `value`, rounded, checked again."""
    def fail(problem: str) -> UserInputError:
        return _refused(src, key, f"relative_to: recipe: {problem}")

    kind, args = next(iter(dist.items()))
    if kind in INT_DISTRIBUTIONS:
        raise fail(f"{kind} draws integers; scale a float range (uniform, loguniform, quniform, "
                   "qloguniform) or a choice of numbers")
    if kind == "choice" and not all(is_number(a) for a in args):
        raise fail("a choice relative to the recipe lists numbers (factors)")
    if value == 0:
        raise fail(f"the recipe of {name} sets {key} to 0, so every multiple of it is 0; give "
                   "absolute values")
    scaled = [_round(a * value, SIGNIFICANT_DIGITS) for a in args]
    try:
        return {kind: check_distribution(kind, scaled, key_type(key), key)}
    except UserInputError as exc:
        raise fail(f"{exc.problem} (factors times {format_number(value)})") from None


def trial_recipe(base: Mapping[str, Any], values: Mapping[str, Any], keys: list[str]) -> Any:
    """The recipe of the model a trial with `values` trains, cached per model section: every
    console line and report row asks for it."""
    raw = apply_overrides(dict(base), {k: v for k, v in values.items() if k not in keys})
    cache_key = json.dumps(raw.get("model"), sort_keys=True, default=str)
    if cache_key not in _recipe_cache:
        _recipe_cache[cache_key] = recipe_for(run_config_from_dict(raw).model)
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
    """`values` with `keys` as factors of the trial's model's recipe (`absolute_values`'s
    inverse)."""
    keys = [k for k in keys if k in values and isinstance(values[k], int | float)]
    if not keys:
        return dict(values)
    own = trial_recipe(base, values, keys)
    return {**values, **{k: _round(values[k] / own.value(k), FACTOR_DIGITS) for k in keys}}


def _dist_words(dist: Mapping[str, Any]) -> str:
    """`0.5 | 1 | 2` for a choice, `0.25-2` for a range."""
    kind, args = next(iter(dist.items()))
    if kind == "choice":
        return " | ".join(format_number(a) for a in args)
    return f"{format_number(args[0])}-{format_number(args[1])}"


def relative_note(recipe: dict[str, Any], key: str) -> str:
    """`0.25-2 x the recipe's 0.002` for a key resolved from factors; '' for any other."""
    entry = (recipe.get("relative") or {}).get(key)
    if not entry:
        return ""
    words = _dist_words(entry["factors"])
    if "per_model" in entry:
        models = "; ".join(f"{row['model']}: {format_number(row['recipe_value'])} -> "
                           f"{_dist_words(row['resolved'])}" for row in entry["per_model"] or [])
        return f"{words} x each trial's recipe ({models})"
    return f"{words} x the recipe's {format_number(entry['recipe_value'])}"


def recipe_lines(base: dict[str, Any], space: dict[str, Any], recipe: dict[str, Any]
                 ) -> list[str]:
    """The recipe of the search's model and, per `RECIPE_KEYS`, where its value comes from."""
    origins = recipe.get("keys") or {}
    if not origins:  # a spec built in code: no base_overrides to tell apart
        with contextlib.suppress(UserInputError):  # an incomplete base: nothing to say
            origins = recipe_key_origins(space, base, set())
    width = max(len(k) for k in RECIPE_KEYS)
    searched_model = next(iter(searched_model_keys(space)), None)
    if searched_model is not None:
        head, values = f"Recipe: each trial's model's own ({searched_model} is searched)", {}
    else:
        head, values = _recipe_values(base, space)
        if recipe.get("name"):
            head = f"Recipe: {recipe['name']} ({recipe['source']})"
    lines = [head]
    for key in RECIPE_KEYS:
        origin = origins.get(key, "recipe")
        if origin == "recipe":
            words = (f"recipe: {format_number(values[key])}" if key in values
                     else "each trial's recipe" if searched_model else "default")
        elif origin == "space (searched)":
            note = relative_note(recipe, key)
            words = f"{origin}: {note}" if note else origin
        else:
            value = fixed_values_of(space).get(key, get_dotted(base, key))
            words = f"{origin}: {format_number(value) if is_number(value) else value}"
        lines.append(f"  {key:<{width}}  {words}")
    return lines


def _recipe_values(base: dict[str, Any], space: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """(the head line, the recipe's value of each key) of the base run's model; never raises."""
    try:
        model = run_config_from_dict(apply_overrides(base, fixed_values_of(space))).model
        recipe = recipe_for(model)
    except UserInputError as exc:
        return f"Recipe: not known here ({exc})", {}
    if recipe is None:
        return f"Recipe: none for {model_words(model)} (detr_core's defaults apply)", {}
    return (f"Recipe: {recipe.name} ({recipe.source})",
            {key: recipe.value(key) for key in RECIPE_KEYS})
