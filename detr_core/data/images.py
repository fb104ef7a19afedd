r"""The one image loader: every file as the 8-bit RGB picture a person sees, in the frame its
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
converted, so a split's check can count them (`detr_core.data.images`).

Is every image file of a COCO split a complete image of the size its record says?

Checked before anything trains, so that a broken file is one line naming the file and the
image id, not a DataLoader traceback minutes into a run:

- the file exists, is not empty and is not a Git LFS pointer checked out in its place;
- PIL recognises its header (format and size, without decoding the pixels);
- its *displayed* size (after its EXIF orientation, as `detr_core.data.images` reads it and
  labelling tools show it) is the record's `width` x `height`;
- it is complete: a JPEG ends with its end-of-image marker (FF D9), a PNG with its IEND chunk.
  Only when that marker is missing (a truncated file, or one with bytes appended after the
  image) is the file decoded in full, which tells the two apart. Other formats are decoded.

Reading a header and the last bytes of a file is two small reads; files are checked by a pool
of threads (the time is spent waiting on the disk, which releases the GIL). Measured in
`benchmarks/image_check.py` (results/benchmarks/image_check.md).

A file that is only found once its name is Unicode-normalised (zips made on macOS store names
decomposed, NFD, where a JSON written elsewhere has them composed, NFC), case-folded (an export
made on Windows or macOS, whose disks ignore case) or given `/` for Windows' `\`, is used, and
the record's `file_name` is set to the name on disk; `ImageSummary` counts those, and the files
that will be turned by their EXIF orientation or converted to 8-bit RGB, for one line per split.

`UnreadableImageError` is raised by the dataset when a file that passed becomes unreadable
during training; it carries the same one line.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from detr_core.files.errors import UserInputError

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


JPEG_END_OF_IMAGE = b"\xff\xd9"
PNG_IEND_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"
GIT_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
#: How many bytes at the end of a file are searched for its end marker (some writers pad).
TAIL_BYTES = 32
DEFAULT_THREADS = 16


class UnreadableImageError(UserInputError):
    """An image file could not be read while training (it passed the check before).

    torch re-raises a DataLoader worker's exception as `type(exc)(text)`, the text being the
    worker's whole traceback; the one line (its last line) is recovered from it here.
    """

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
    """An image file that fails the check, and why."""

    record: ImageRecord
    problem: str


@dataclass(frozen=True)
class FileCheck:
    """One file's check: the problem (None: fine), its header facts, the name found on disk
    when only a Unicode-normalised name matched."""

    problem: str | None
    facts: ImageFacts | None = None
    found_as: Path | None = None


@dataclass
class ImageSummary:
    """What a split's check saw in files that passed (for one line per split)."""

    images: int = 0
    rotated: int = 0
    converted: Counter = field(default_factory=Counter)  # mode -> count
    renamed: list[tuple[Any, str, str]] = field(default_factory=list)  # (id, record, disk)

    def add(self, record: ImageRecord, check: FileCheck) -> None:
        self.images += 1
        if check.facts is not None:
            self.rotated += check.facts.rotated
            if check.facts.converted:
                self.converted[check.facts.mode] += 1
        if check.found_as is not None:
            self.renamed.append((record.image_id, record.path.name, check.found_as.name))


def inspect_image_file(record: ImageRecord) -> FileCheck:
    """Why `record`'s file is not a complete image of the recorded size (None when it is),
    with its header facts and the name found on disk (see `FileCheck`).

    The problem completes "image file <path> ...": `is empty (0 bytes)`, `not found`...
    """
    path = record.path
    if not os.path.lexists(path):
        variant = unicode_variant(path)
        if variant is not None:
            check = _inspect(variant, record)
            return FileCheck(check.problem, check.facts, variant)
    return _inspect(path, record)


def _inspect(path: Path, record: ImageRecord) -> FileCheck:
    from PIL import Image, UnidentifiedImageError

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
                                 f"({_one_line(exc)}); raise PIL.Image.MAX_IMAGE_PIXELS if the "
                                 "image is genuine")
            except UnidentifiedImageError:
                return FileCheck(f"is not an image PIL can read (it starts with {head[:12]!r})")
            except (SyntaxError, ValueError) as exc:
                return FileCheck(f"is a corrupt image: {_one_line(exc)}")
            except OSError as exc:
                if exc.errno is not None:  # the file system's error, not PIL's
                    raise
                return FileCheck(f"is a corrupt image: {_one_line(exc)}")
            with image:
                facts = image_facts(image)
                problem = _size_problem(facts, record) or _completeness_problem(
                    image, handle, size)
                return FileCheck(problem, facts)
    except FileNotFoundError:
        return FileCheck("not found")
    except OSError as exc:
        return FileCheck(f"cannot be read: {exc.strerror or exc}")


def unicode_variant(path: Path) -> Path | None:
    """The one existing file `path` means when its name differs from the disk only by Unicode
    normalisation (NFC / NFD), by letter case, or by Windows `\\` separators; else None.

    Walks `path` from its deepest existing folder, matching each missing component by its
    normalised name (a case-only match must be the only one in its folder), so sub-folders in
    either form are found too.
    """
    text = str(path)
    if "\\" in text:
        path = Path(text.replace("\\", "/"))
        if os.path.lexists(path):
            return path
    parts = path.parts
    base = Path(parts[0])
    for part in parts[1:]:
        candidate = base / part
        if os.path.lexists(candidate):
            base = candidate
            continue
        found = _matching_entry(base, part)
        if found is None:
            return None
        base = base / found
    return base


def _matching_entry(folder: Path, name: str) -> str | None:
    try:
        entries = os.listdir(folder)
    except OSError:
        return None
    wanted = unicodedata.normalize("NFC", name)
    same = [e for e in entries if unicodedata.normalize("NFC", e) == wanted]
    if same:
        return same[0]
    folded = [e for e in entries if unicodedata.normalize("NFC", e).casefold() == wanted.casefold()]
    return folded[0] if len(folded) == 1 else None


def _size_problem(facts: ImageFacts, record: ImageRecord) -> str | None:
    shown = facts.displayed_size
    if shown == (int(record.width), int(record.height)):
        return None
    recorded = f"{_dimension(record.width)}x{_dimension(record.height)}"
    if facts.stored_size == shown:
        return f"is {shown[0]}x{shown[1]} pixels but its COCO record says {recorded}"
    problem = (f"is {shown[0]}x{shown[1]} pixels as displayed (EXIF orientation "
               f"{facts.orientation}; stored {facts.stored_size[0]}x{facts.stored_size[1]}) "
               f"but its COCO record says {recorded}")
    if facts.stored_size == (int(record.width), int(record.height)):
        problem += (": the record has the stored size, so its boxes may be in the stored "
                    "frame; remove the orientation tag (or export the images rotated)")
    return problem


def _dimension(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _completeness_problem(image: Any, handle: Any, size: int) -> str | None:
    """None when the file ends with its format's end marker or decodes in full."""
    handle.seek(max(0, size - TAIL_BYTES))
    tail = handle.read(TAIL_BYTES)
    if image.format == "JPEG" and JPEG_END_OF_IMAGE in tail:
        return None
    if image.format == "PNG" and tail.endswith(PNG_IEND_CHUNK):
        return None
    try:
        image.load()  # the whole file: truncated data raises here
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, zlib.error...
        what = {"JPEG": "is a truncated or corrupt JPEG (no end-of-image marker)",
                "PNG": "is a truncated or corrupt PNG (no IEND chunk)"}.get(
            str(image.format), f"is a corrupt {image.format} image")
        return f"{what}: {_one_line(exc)}"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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
    """Raise `UserInputError` for the first bad image, naming the annotation file, the image id
    and the image file: `<train.json>: image id 7: image file <path> is empty (0 bytes)`.

    The line also says how many other images of the split fail, so a user fixing a broken
    export learns the extent at once. When all pass: what was seen, and each file's check.
    """
    checks = inspect_images(records, threads)
    problems = [ImageProblem(r, c.problem) for r, c in zip(records, checks, strict=True)
                if c.problem]
    if not problems:
        summary = ImageSummary()
        for record, check in zip(records, checks, strict=True):
            summary.add(record, check)
        return summary, checks
    first = problems[0]
    more = len(problems) - 1
    suffix = f" ({more} more image{'s' if more > 1 else ''} of this split fail too)" if more \
        else ""
    raise image_error(first.record, first.problem + suffix, annotation_file)


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
