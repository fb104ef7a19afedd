"""The one image loader: every file as the 8-bit RGB picture a person sees, in the frame its
boxes were drawn in.

Used by training, evaluation, prediction and every drawing, so that all of them see the same
pixels. As the field's loaders read a file (detectron2's `read_image`, OpenCV's `imread` in
mmcv / mmdet, Ultralytics' `exif_transpose`):

- **EXIF orientation** is applied (`PIL.ImageOps.exif_transpose`): a phone photo is stored
  sideways with a tag saying how to turn it, labelling tools show and annotate it turned, so
  its boxes are in the displayed frame. `displayed_size` is the size a COCO record must state.
- **Every PIL mode becomes 8-bit RGB with its contrast kept**: 16- and 32-bit integer and
  float images (`I;16*`, `I`, `F`: thermal, medical, industrial cameras) are scaled from their
  own value range to 0..255, where `convert("RGB")` would clip every value above 255 to white;
  transparency (RGBA, LA, PA, palette with a transparent colour) is laid on black; CMYK,
  YCbCr, bilevel and grayscale are converted by PIL.

`image_facts` says, from the header alone (no decoding), whether a file will be turned or
converted, so a split's check can count them (`detr_core.data.image_check`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

EXIF_ORIENTATION_TAG = 0x0112
#: Orientations that swap width and height (transpose, 90 degrees, transverse, 270 degrees).
SIDEWAYS_ORIENTATIONS = (5, 6, 7, 8)
#: Modes with more than 8 bits per value, scaled from their own range.
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
#: Modes with an alpha channel (or a palette that may carry one), laid on black.
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


@dataclass(frozen=True)
class ImageFacts:
    """What the header says about a file: its stored size, orientation tag and mode."""

    stored_size: tuple[int, int]
    orientation: int
    mode: str

    @property
    def rotated(self) -> bool:
        """An EXIF orientation other than 1 (as stored) turns or mirrors the pixels."""
        return self.orientation not in (0, 1)

    @property
    def displayed_size(self) -> tuple[int, int]:
        width, height = self.stored_size
        return (height, width) if self.orientation in SIDEWAYS_ORIENTATIONS else (width, height)

    @property
    def converted(self) -> bool:
        """Not already 8-bit RGB: decoded through `to_rgb8`."""
        return self.mode != "RGB"


def orientation_of(image: Image.Image) -> int:
    """The EXIF orientation tag (1..8), 1 when absent or unreadable."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block: read the pixels as stored, as exif_transpose does
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def image_facts(image: Image.Image) -> ImageFacts:
    """Facts of an opened (not decoded) image."""
    return ImageFacts(tuple(image.size), orientation_of(image), image.mode)


def to_rgb8(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB, contrast kept (see the module docstring)."""
    if image.mode == "RGB":
        return image
    if image.mode in WIDE_MODES:
        values = np.asarray(image, dtype=np.float64)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        scale = 255.0 / (high - low) if high > low else 0.0
        gray = np.nan_to_num((values - low) * scale, nan=0.0, posinf=255.0, neginf=0.0)
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=2), "RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def load_rgb(path: str | Path) -> np.ndarray:
    """The file as HxWx3 uint8 RGB in its displayed orientation (a writable array)."""
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image) if orientation_of(image) != 1 else image
        return np.array(to_rgb8(upright))
