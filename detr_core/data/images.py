r"""The one image loader, and the check that each image file of a COCO split is a complete
image of the size its record says.

`load_rgb` (training, evaluation, prediction and drawing see the same pixels) reads a file as
detectron2, mmcv and Ultralytics do: EXIF orientation applied (labelling tools show the photo
turned); every mode as 8-bit RGB, wide ones scaled from their own range (`convert("RGB")` would
clip all above 255 to white); transparency on black. The check runs before training and reads
headers, not pixels, where a file ends with its end marker, in threads (disk waits release the
GIL: `benchmarks/image_check.py`). A file found only with its name Unicode-normalised (macOS
zips store NFD), case-folded or with `/` for `\` is used, and its record takes the name on disk.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from detr_core.files.errors import UserInputError

SIDEWAYS_ORIENTATIONS = (5, 6, 7, 8)  # transpose, 90 degrees, transverse, 270 degrees
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # > 8 bits, scaled from own range
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")  # laid on black
JPEG_END_OF_IMAGE = b"\xff\xd9"
PNG_IEND_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"
GIT_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
TAIL_BYTES = 32  # the end of a file searched for its end marker (some writers pad)
DEFAULT_THREADS = 16


def orientation_of(image: Image.Image) -> int:
    """The EXIF orientation tag (1..8), 1 when absent or unreadable."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block: read the pixels as stored, as exif_transpose does
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


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
    if image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size)  # black
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def load_rgb(path: str | Path) -> np.ndarray:
    """The file as HxWx3 uint8 RGB in its displayed orientation (a writable array)."""
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image) if orientation_of(image) != 1 else image
        return np.array(to_rgb8(upright))


class UnreadableImageError(UserInputError):
    """An image file that passed the check could not be read while training. torch re-raises
    a worker's exception as `type(exc)(whole traceback)`: the one line (its last) is kept."""

    def __init__(self, problem: str, *, source: str | Path | None = None,
                 key: str | None = None) -> None:
        if source is None and "Traceback" in problem:
            last = [line for line in problem.splitlines() if line.strip()][-1]
            problem = last.split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(problem, source=source, key=key)


@dataclass(frozen=True)
class ImageRecord:
    """What a COCO record says about one image file."""

    image_id: Any
    path: Path
    width: float
    height: float


@dataclass(frozen=True)
class ImageProblem:
    record: ImageRecord
    problem: str


@dataclass(frozen=True)
class FileCheck:
    """One file's check: problem (None: fine), EXIF orientation, mode, name found on disk (of a
    readable file)."""

    problem: str | None
    orientation: int = 1
    mode: str = "RGB"
    found_as: Path | None = None


@dataclass
class ImageSummary:
    """What a split's check saw in files that passed (for one line per split)."""

    images: int
    rotated: int  # turned or mirrored by their EXIF orientation
    converted: Counter  # mode -> files decoded through `to_rgb8`
    renamed: list[tuple[Any, str, str]]  # (id, record, disk)


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (its type's name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def inspect_image_file(record: ImageRecord) -> FileCheck:
    """Why `record`'s file is not a complete image of the recorded size, completing
    "image file <path> ..." (`is empty (0 bytes)`, `not found`...)."""
    found_as = None if os.path.lexists(record.path) else unicode_variant(record.path)
    path = found_as or record.path
    try:
        size = path.stat().st_size
        if path.is_dir():
            return FileCheck("is a folder")
        if size == 0:
            return FileCheck("is empty (0 bytes)")
        with open(path, "rb") as handle:
            head = handle.read(len(GIT_LFS_POINTER))
            if head == GIT_LFS_POINTER:
                return FileCheck("is a Git LFS pointer, not the image (run `git lfs pull`)")
            handle.seek(0)
            try:
                image = Image.open(handle)
            except Image.DecompressionBombError as exc:
                return FileCheck(f"is larger than PIL's decompression-bomb limit "
                                 f"({one_line(exc)}); raise PIL.Image.MAX_IMAGE_PIXELS if the "
                                 "image is genuine")
            except UnidentifiedImageError:
                return FileCheck(f"is not an image PIL can read (it starts with {head[:12]!r})")
            except (SyntaxError, ValueError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:  # the file system's
                    raise
                return FileCheck(f"is a corrupt image: {one_line(exc)}")
            with image:
                orientation = orientation_of(image)
                return FileCheck(_size_problem(tuple(image.size), orientation, record)
                                 or _completeness_problem(image, handle, size),
                                 orientation, image.mode, found_as)
    except FileNotFoundError:
        return FileCheck("not found")
    except OSError as exc:
        return FileCheck(f"cannot be read: {exc.strerror or exc}")


def unicode_variant(path: Path) -> Path | None:
    """The one existing file `path` means when any component differs from the disk only by
    Unicode form, letter case (the only such match in its folder) or `\\` separators."""
    if "\\" in str(path):
        path = Path(str(path).replace("\\", "/"))
        if os.path.lexists(path):
            return path
    base = Path(path.parts[0])
    for part in path.parts[1:]:
        if not os.path.lexists(base / part):
            try:
                entries = os.listdir(base)
            except OSError:
                return None
            wanted = unicodedata.normalize("NFC", part)
            same = [e for e in entries if unicodedata.normalize("NFC", e) == wanted]
            folded = [e for e in entries
                      if unicodedata.normalize("NFC", e).casefold() == wanted.casefold()]
            if not same and len(folded) != 1:
                return None
            part = (same or folded)[0]
        base = base / part
    return base


def _size_problem(stored: tuple[int, int], orientation: int, record: ImageRecord) -> str | None:
    shown = stored[::-1] if orientation in SIDEWAYS_ORIENTATIONS else stored
    recorded_size = (int(record.width), int(record.height))
    if shown == recorded_size:
        return None
    recorded = "x".join(str(int(v)) if float(v).is_integer() else str(v)
                        for v in (record.width, record.height))
    if stored == shown:
        return f"is {shown[0]}x{shown[1]} pixels but its COCO record says {recorded}"
    problem = (f"is {shown[0]}x{shown[1]} pixels as displayed (EXIF orientation "
               f"{orientation}; stored {stored[0]}x{stored[1]}) "
               f"but its COCO record says {recorded}")
    if stored == recorded_size:
        problem += (": the record has the stored size, so its boxes may be in the stored "
                    "frame; remove the orientation tag (or export the images rotated)")
    return problem


def _completeness_problem(image: Any, handle: Any, size: int) -> str | None:
    """None when the file ends with its format's end marker or decodes in full."""
    handle.seek(max(0, size - TAIL_BYTES))
    tail = handle.read(TAIL_BYTES)
    if (image.format == "JPEG" and JPEG_END_OF_IMAGE in tail) or (
            image.format == "PNG" and tail.endswith(PNG_IEND_CHUNK)):
        return None
    try:
        image.load()  # the whole file: truncated data raises here
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, zlib.error...
        what = {"JPEG": "is a truncated or corrupt JPEG (no end-of-image marker)",
                "PNG": "is a truncated or corrupt PNG (no IEND chunk)"}.get(
            str(image.format), f"is a corrupt {image.format} image")
        return f"{what}: {one_line(exc)}"
    return None


def inspect_images(records: Sequence[ImageRecord],
                   threads: int | None = None) -> list[FileCheck]:
    """`inspect_image_file` of every record, in record order, by a pool of threads."""
    threads = threads or min(DEFAULT_THREADS, max(1, len(records)))
    if threads == 1 or len(records) < 2:
        return list(map(inspect_image_file, records))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="image-check") as pool:
        return list(pool.map(inspect_image_file, records, chunksize=32))


def find_image_problems(records: Sequence[ImageRecord],
                        threads: int | None = None) -> list[ImageProblem]:
    """Every record whose file fails `inspect_image_file`, in record order."""
    return [ImageProblem(r, c.problem) for r, c in
            zip(records, inspect_images(records, threads), strict=True) if c.problem]


def check_images(records: Sequence[ImageRecord], annotation_file: str | Path,
                 threads: int | None = None) -> tuple[ImageSummary, list[FileCheck]]:
    """What was seen and each file's check, or `UserInputError` for the first bad image, with
    how many others fail (a user fixing an export learns the extent at once)."""
    checks = inspect_images(records, threads)
    problems = [(r, c.problem) for r, c in zip(records, checks, strict=True) if c.problem]
    if problems:
        (record, problem), more = problems[0], len(problems) - 1
        if more:
            problem += f" ({more} more image{'s' if more > 1 else ''} of this split fail too)"
        raise image_error(record, problem, annotation_file)
    return ImageSummary(
        len(records), sum(c.orientation not in (0, 1) for c in checks),
        Counter(c.mode for c in checks if c.mode != "RGB"),
        [(r.image_id, r.path.name, c.found_as.name)
         for r, c in zip(records, checks, strict=True) if c.found_as is not None]), checks


def image_error(record: ImageRecord, problem: str, annotation_file: str | Path,
                cls: type[UserInputError] = UserInputError) -> UserInputError:
    """The one-line error for `record`'s file: annotation file, image id, file, problem."""
    return cls(f"image file {record.path} {problem}", source=annotation_file,
               key=f"image id {record.image_id}")


def evict_from_page_cache(path: str | Path) -> None:
    """Drop a file's pages from the OS cache (what a cold read of a fresh dataset sees)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
