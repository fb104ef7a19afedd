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

Ranges relative to the checkpoint's recipe: `{loguniform: [0.25, 2.0], relative_to: recipe}`.

A learning rate that suits one checkpoint is 5-40x off for another (`detr_core.model`'s
recipes), so a space may state the four values a recipe fills (`RECIPE_KEYS`: learning rate,
backbone lr ratio, weight decay, gradient clipping) as multiples of the recipe's own, and the
same file then fits any checkpoint. They are resolved when the space file is loaded, against
the search's base run (its `base` and `base_overrides`) when it has one checkpoint for the
whole search: the bounds and q of a range, or the values of a `choice`, are multiplied by the
recipe's value, so the Tune / Optuna space, the trials and every result hold absolute values.

`SearchSpec.recipe` records what was resolved (factors, the recipe's value, name and source)
and where each of the four values comes from (`space (searched)`, `space (fixed)`,
`space (base_overrides)`, `run`, or `recipe`: left to the recipe, which `detr_core` applies
in every trial); it is written to `search_spec.yaml`, and `recipe_lines` puts it in words for
the plan that `--dry-run` prints. When the model itself is searched there is no one recipe:
the factors are resolved per trial (`search.space.relative_ranges`).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from collections.abc import Mapping
from typing import Any

from detr_core.config.run_config import (
    apply_overrides,
    get_dotted,
    key_type,
    run_config_from_dict,
)
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


RELATIVE_KEY = "relative_to"
RELATIVE_TARGETS = ("recipe",)
#: Resolved bounds are rounded to this many significant digits (0.25 * 0.002 stays 5e-4).
SIGNIFICANT_DIGITS = 12


def recipe_keys() -> tuple[str, ...]:
    """The run-config keys a recipe fills, in detr_core's order (`RECIPE_KEYS`)."""
    return tuple(RECIPE_KEYS)




def split_relative(space: Any, src: str) -> tuple[Any, list[str]]:
    """`space:` with `relative_to` taken off its entries, and the keys that had it.

    What is left of such an entry is checked as any distribution is (`parse_space`); here only
    `relative_to` itself: `recipe`, on one of `RECIPE_KEYS`, next to a distribution.
    """
    if not isinstance(space, dict):
        return space, []
    result: dict[Any, Any] = {}
    relative: list[str] = []
    for key, value in space.items():
        if not (isinstance(key, str) and isinstance(value, dict) and RELATIVE_KEY in value):
            result[key] = value
            continue
        target = value[RELATIVE_KEY]
        if target not in RELATIVE_TARGETS:
            raise _refused(src, key, f"relative_to takes recipe (the checkpoint's fine-tuning "
                                     f"recipe), got {target!r}")
        if key not in recipe_keys():
            raise _refused(src, key, f"relative_to: recipe applies to {', '.join(recipe_keys())}")
        rest = {k: v for k, v in value.items() if k != RELATIVE_KEY}
        if not any(k in DISTRIBUTIONS for k in rest):
            raise _refused(src, key, "relative_to: recipe goes with a range or a choice of "
                                     "factors, e.g. {loguniform: [0.25, 2.0], relative_to: recipe}")
        result[key] = rest
        relative.append(key)
    return result, relative


def _refused(src: str, key: str, problem: str) -> UserInputError:
    """The one-line error about space key `key` of file `src`."""
    return UserInputError(problem, source=src, key=f"space.{key}")


def resolve_relative(space: dict[str, Any], relative: list[str], base: dict[str, Any],
                     overridden: set[str], src: str
                     ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(the space as trials sample it, the `SearchSpec.recipe` record, the spaces to check).

    `space` is parsed (its relative entries hold factors), `base` the complete base run,
    `overridden` the dotted keys `base_overrides` sets. With one model for the whole search,
    each relative entry becomes absolute values here (the returned space; nothing else to
    check). With a searched model (`MODEL_KEYS`), the space keeps the factors, each trial
    resolves them against its own model's recipe (`search.space.relative_ranges`), and the
    third item holds one absolute space per candidate model, for the caller to validate.
    Refused, naming the key: a model without a recipe, a recipe value of 0 (every multiple is
    0), an integer distribution or a choice that is not all numbers.
    """
    record: dict[str, Any] = {"keys": recipe_key_origins(space, base, overridden)}
    if not relative:
        return space, record, []
    if searched_model_keys(space):
        per_trial, candidates = resolve_per_trial(space, relative, base, src, _scaled,
                                                  model_words)
        return space, {**record, **per_trial}, candidates
    recipe = _base_recipe(space, base, src, relative[0])
    record.update(name=recipe.name, source=recipe.source, relative={})
    resolved = dict(space)
    for key in relative:
        factors = space[key]
        dist = _scaled(factors, recipe.value(key), recipe.name, src, key)
        resolved[key] = dist
        record["relative"][key] = {"factors": copy.deepcopy(factors),
                                   "recipe_value": recipe.value(key),
                                   "resolved": copy.deepcopy(dist)}
    return resolved, record, [resolved]


def recipe_key_origins(space: dict[str, Any], base: dict[str, Any],
                       overridden: set[str]) -> dict[str, str]:
    """Where each of `RECIPE_KEYS` gets its value: the space, base_overrides, the base run,
    or (`recipe`) left to the recipe of the trial's model (its defaults when it has none)."""
    searched, fixed = set(searched_keys_of(space)), fixed_values_of(space)
    origins: dict[str, str] = {}
    for key in recipe_keys():
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


def _base_recipe(space: dict[str, Any], base: dict[str, Any], src: str, key: str) -> Any:
    """The recipe of the base run's model (fixed space values applied); refused without one."""
    def fail(problem: str) -> UserInputError:
        return _refused(src, key, f"relative_to: recipe: {problem}")

    try:
        model = run_config_from_dict(apply_overrides(base, fixed_values_of(space))).model
        recipe = recipe_for(model)
    except UserInputError as exc:
        where = f"{exc.source}: " if exc.source else ""
        raise fail(f"{where}{exc.problem}") from None
    if recipe is None:
        raise fail(f"the base model ({model_words(model)}) has no recipe (no recipe.json in its "
                   "folder, and its family has no published one); give absolute values")
    return recipe


def model_words(model: Any) -> str:
    """The model of a run in a few words: its checkpoint, else its preset and family."""
    if model.checkpoint is not None:
        return f"checkpoint {model.checkpoint}"
    return f"preset {model.preset}, family {model.family or 'detr'}"


def _scaled(dist: dict, value: float, name: str, src: str, key: str) -> dict:
    """`dist` (factors) times `value`, rounded to `SIGNIFICANT_DIGITS`, checked again."""
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


# ---------------------------------------------------------------------------------------------
# in words (the plan `--dry-run` prints)


def relative_note(recipe: dict[str, Any], key: str) -> str:
    """`0.25-2 x the recipe's 0.002` for a key resolved from factors; '' for any other."""
    entry = (recipe.get("relative") or {}).get(key)
    if not entry:
        return ""
    kind, factors = next(iter(entry["factors"].items()))
    words = (" | ".join(format_number(f) for f in factors) if kind == "choice"
             else f"{format_number(factors[0])}-{format_number(factors[1])}")
    if "per_model" in entry:
        return (f"{words} x each trial's recipe "
                f"({per_model_note(entry, format_number)})")
    return f"{words} x the recipe's {format_number(entry['recipe_value'])}"


def recipe_lines(base: dict[str, Any], space: dict[str, Any], recipe: dict[str, Any]
                 ) -> list[str]:
    """The recipe of the search's model and, per `RECIPE_KEYS`, where its value comes from."""
    origins = recipe.get("keys") or {}
    if not origins:  # a spec built in code: no base_overrides to tell apart
        with contextlib.suppress(UserInputError):  # an incomplete base: nothing to say
            origins = recipe_key_origins(space, base, set())
    keys = recipe_keys()
    width = max(len(k) for k in keys)
    searched_model = next(iter(searched_model_keys(space)), None)
    values: dict[str, float] = {}
    if searched_model is not None:
        head = f"Recipe: each trial's model's own ({searched_model} is searched)"
    elif recipe.get("name"):
        head = f"Recipe: {recipe['name']} ({recipe['source']})"
        values = _recipe_values(base, space)[1]
    else:
        head, values = _recipe_values(base, space)
    lines = [head]
    for key in keys:
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
    """(the head line, the recipe's value of each key) of the base run's model; never raises:
    a recipe that cannot be read here is said so (each trial reads it again)."""
    try:
        model = run_config_from_dict(apply_overrides(base, fixed_values_of(space))).model
        recipe = recipe_for(model)
    except UserInputError as exc:
        return f"Recipe: not known here ({exc})", {}
    if recipe is None:
        return f"Recipe: none for {model_words(model)} (detr_core's defaults apply)", {}
    return (f"Recipe: {recipe.name} ({recipe.source})",
            {key: recipe.value(key) for key in recipe_keys()})
