"""What a search points to, checked on the driver before anything is written or started.

`search.space.spec` checks what the space file *says*; here, with detr_core's preflight, what it
*points to*: the checkpoint and augmentation pipelines of the base run and of every candidate
value of a searched `model.*` / `augmentation.*` key, in one `UserInputError` line naming the
file and key (`space.<key>` for a candidate). The data is checked where it is prepared.
"""

from __future__ import annotations

from typing import Any

from detr_core.config.run_config import apply_overrides, run_config_from_dict, touches
from detr_core.files.errors import UserInputError
from detr_core.training.preflight import check_static_inputs
from search.space.distributions import candidate_values, fixed_values_of, searched_keys_of
from search.space.spec import SearchSpec

#: Run-config sections whose values point to things on disk or build objects.
STATIC_INPUT_KEYS = ("model", "augmentation")


def check_search_inputs(spec: SearchSpec) -> None:
    """Checkpoints and augmentation pipelines of the base run and of every searched value
    (also run by `--dry-run`)."""
    src = str(spec.source)
    searched = searched_keys_of(spec.space)
    first = {**fixed_values_of(spec.space),
             **{k: candidate_values(spec.space[k])[0] for k in searched}}
    _check_static(spec.base, first, src, None)
    for key in searched:
        if touches([key], STATIC_INPUT_KEYS):
            for value in candidate_values(spec.space[key])[1:]:
                _check_static(spec.base, {**first, key: value}, src, key)


def _check_static(base: dict[str, Any], params: dict[str, Any], src: str,
                  searched: str | None) -> None:
    config = run_config_from_dict(apply_overrides(base, params), source=src)
    try:
        check_static_inputs(config)
    except UserInputError as exc:
        own = searched or next((k for k in params if exc.key and exc.key.startswith(k)), None)
        if own is None:
            raise
        raise UserInputError(f"value {params[own]!r} is not valid here: "
                             f"{exc.source + ': ' if exc.source else ''}{exc.problem}",
                             source=src, key=f"space.{own}") from None
