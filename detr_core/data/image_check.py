"""Is every image file of a COCO split a complete image of the size its record says?

Checked before anything trains, so that a broken file is one line naming the file and the
image id, not a DataLoader traceback minutes into a run:

- the file exists, is not empty and is not a Git LFS pointer checked out in its place;
- PIL recognises its header (format and size, without decoding the pixels);
- its size is the record's `width` x `height` (EXIF rotation is named when it explains a
  mismatch: training reads the pixels as stored);
- it is complete: a JPEG ends with its end-of-image marker (FF D9), a PNG with its IEND chunk.
  Only when that marker is missing (a truncated file, or one with bytes appended after the
  image) is the file decoded in full, which tells the two apart. Other formats are decoded.

Reading a header and the last bytes of a file is two small reads; files are checked by a pool
of threads (the time is spent waiting on the disk, which releases the GIL). Measured in
`benchmarks/image_check.py` (results/benchmarks/image_check.md).

`UnreadableImageError` is raised by the dataset when a file that passed becomes unreadable
during training; it carries the same one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detr_core.errors import UserInputError

JPEG_END_OF_IMAGE = b"\xff\xd9"
PNG_IEND_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"
GIT_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
#: How many bytes at the end of a file are searched for its end marker (some writers pad).
TAIL_BYTES = 32
DEFAULT_THREADS = 16
_EXIF_ORIENTATION = 0x0112
_ROTATED_ORIENTATIONS = (5, 6, 7, 8)


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


def check_image_file(record: ImageRecord) -> str | None:
    """Why `record`'s file is not a complete image of the recorded size; None when it is.

    The answer completes "image file <path> ...": `is empty (0 bytes)`, `not found`...
    """
    from PIL import Image, UnidentifiedImageError

    path = record.path
    try:
        size = path.stat().st_size
        if path.is_dir():
            return "is a folder"
        if size == 0:
            return "is empty (0 bytes)"
        with open(path, "rb") as handle:
            head = handle.read(len(GIT_LFS_POINTER))
            if head == GIT_LFS_POINTER:
                return "is a Git LFS pointer, not the image (run `git lfs pull`)"
            handle.seek(0)
            try:
                image = Image.open(handle)
            except UnidentifiedImageError:
                return f"is not an image PIL can read (it starts with {head[:12]!r})"
            except (SyntaxError, ValueError) as exc:
                return f"is a corrupt image: {_one_line(exc)}"
            except OSError as exc:
                if exc.errno is not None:  # the file system's error, not PIL's
                    raise
                return f"is a corrupt image: {_one_line(exc)}"
            with image:
                mismatch = _size_problem(image, record)
                if mismatch:
                    return mismatch
                return _completeness_problem(image, handle, size)
    except FileNotFoundError:
        return "not found"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"


def _size_problem(image: Any, record: ImageRecord) -> str | None:
    width, height = image.size
    if (width, height) == (int(record.width), int(record.height)):
        return None
    problem = (f"is {width}x{height} pixels but its COCO record says "
               f"{_dimension(record.width)}x{_dimension(record.height)}")
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # broken EXIF data: the size mismatch is the message
        orientation = None
    if orientation in _ROTATED_ORIENTATIONS and (height, width) == (record.width,
                                                                      record.height):
        problem += (" (its EXIF orientation rotates it to the recorded size, but training "
                    "reads the pixels as stored: save it rotated, e.g. with "
                    "PIL.ImageOps.exif_transpose)")
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


def find_image_problems(records: Sequence[ImageRecord],
                        threads: int | None = None) -> list[ImageProblem]:
    """Every record whose file fails `check_image_file`, in record order."""
    threads = threads or min(DEFAULT_THREADS, max(1, len(records)))
    if threads == 1 or len(records) < 2:
        problems: Iterable[str | None] = map(check_image_file, records)
    else:
        with ThreadPoolExecutor(max_workers=threads,
                                thread_name_prefix="image-check") as pool:
            problems = list(pool.map(check_image_file, records, chunksize=32))
    return [ImageProblem(r, p) for r, p in zip(records, problems, strict=True) if p]


def check_images(records: Sequence[ImageRecord], annotation_file: str | Path,
                 threads: int | None = None) -> None:
    """Raise `UserInputError` for the first bad image, naming the annotation file, the image id
    and the image file: `<train.json>: image id 7: image file <path> is empty (0 bytes)`.

    The line also says how many other images of the split fail, so a user fixing a broken
    export learns the extent at once.
    """
    problems = find_image_problems(records, threads)
    if not problems:
        return
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
