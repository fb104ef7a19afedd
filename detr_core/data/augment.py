"""albumentations pipelines from YAML: `[{HorizontalFlip: {p: 0.5}}, {ColorJitter: {...}}]`.

Boxes travel with the image in COCO pixel format; boxes clipped to the image and those that
end up smaller than `min_area` (or less visible than `min_visibility`) are dropped together
with their labels.

Every pipeline is seeded: albumentations 2.x keeps its own random state (numpy Generator and
`random.Random`), independent of the global seeds, and without a seed it draws one from the
operating system, so a run's `seed` would not fix its augmentation. DataLoader worker
processes re-seed their copy (`detr_core.data.dataset`).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from detr_core.files.errors import UserInputError


def build_augmentation(
    steps: list[Any], min_area: float, min_visibility: float, where: str, seed: int = 0
) -> Any:
    """An `A.Compose` (seeded with `seed`) from a list of one-key mappings.

    `where` names the YAML key in error messages.
    """
    import albumentations as A

    transforms = []
    for index, step in enumerate(steps):
        key = f"{where}[{index}]"
        if isinstance(step, str):
            name, kwargs = step, {}
        elif isinstance(step, dict) and len(step) == 1:
            name, kwargs = next(iter(step.items()))
            kwargs = {} if kwargs is None else kwargs
        else:
            raise UserInputError(f"expected `TransformName: {{arg: value}}`, got {step!r}", key=key)
        cls = getattr(A, str(name), None)
        if not isinstance(cls, type) or not issubclass(cls, A.BasicTransform):
            raise UserInputError(f"unknown albumentations transform {name!r}", key=key)
        if not isinstance(kwargs, dict):
            raise UserInputError(f"arguments of {name} must be a mapping", key=key)
        try:
            with warnings.catch_warnings():
                # albumentations only *warns* about an argument it does not know and drops it
                warnings.filterwarnings("error", message=".*not valid for transform.*")
                transforms.append(cls(**kwargs))
        except (TypeError, ValueError, UserWarning) as exc:
            raise UserInputError(f"{name}: {argument_problem(exc)}", key=key) from None
    with warnings.catch_warnings():  # an empty list is valid: boxes are still clipped
        warnings.filterwarnings("ignore", message="Got processor for bboxes")
        return _compose(A, transforms, min_area, min_visibility, seed)


_PYDANTIC_HEADER = re.compile(r"^\d+ validation errors? for \w+$")
_PYDANTIC_DETAIL = re.compile(r"^\s+(?P<msg>.*?)(?: \[type=[^,\]]+(?:, input_value=(?P<value>.*?))?"
                              r"(?:, input_type=\w+)?\])?$")


def argument_problem(exc: BaseException) -> str:
    """One line for a transform's refusal of its arguments, naming the argument.

    albumentations validates arguments with pydantic, whose message is a block: "2 validation
    errors for InitSchema / brightness.tuple[float, float] / Input should be ...". It becomes
    `brightness: Input should be a valid tuple or a valid number (got 'x')`.
    """
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if not _PYDANTIC_HEADER.match(lines[0].strip()):
        return " ".join(lines[0].split())
    fields: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    field = None
    for line in lines[1:]:
        if not line.startswith(" "):
            field = line.strip().split(".", 1)[0]  # `brightness.float`: one branch of a union
            fields.setdefault(field, [])
            continue
        match = _PYDANTIC_DETAIL.match(line)
        if field is None or match is None or line.strip().startswith("For further"):
            continue
        message = match.group("msg").removeprefix("Value error, ")
        if message not in fields[field]:
            fields[field].append(message)
        if match.group("value") and message != "Field required":
            values.setdefault(field, match.group("value"))
    parts = []
    for name, messages in fields.items():
        got = f" (got {values[name]})" if name in values else ""
        parts.append(f"{name}: {' or '.join(messages)}{got}")
    return "; ".join(parts) or " ".join(lines[0].split())


def _compose(A: Any, transforms: list[Any], min_area: float, min_visibility: float,
             seed: int) -> Any:
    """The seeded `Compose`. albumentations filters the boxes (clip, `min_area`,
    `min_visibility`) after every transform, colour transforms included, and once more at the
    end. When no transform after the first can move boxes, those filters are the end's filter
    applied to the same boxes again, so it is left to the end: on the default pipeline (flip,
    then colour jitter) that is a third of the augmentation's time, for the same pixels, boxes
    and labels. With a box-moving transform later in the list the filter after each transform
    stays: it drops boxes below `min_area` before a later scale-up could rescue them."""
    later_moves_boxes = any(not isinstance(t, A.ImageOnlyTransform) for t in transforms[1:])
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(
            format="coco",
            label_fields=["category_ids"],
            min_area=min_area,
            min_visibility=min_visibility,
            clip=True,
            check_each_transform=later_moves_boxes,
        ),
        seed=seed,
    )
