"""Experiment folders on any storage, and their plain files read and written atomically.

    location("results/iou")              # -> pathlib.Path (absolute)
    location("s3://bucket/results/iou")  # -> UriPath over pyarrow's S3FileSystem

Ray Tune writes trials to a `--storage` URI through `pyarrow.fs`; what this project reads or
writes itself goes through `UriPath`, the part of `pathlib.Path`'s API the search uses, so code
takes either (`ExperimentPath`). Object stores have no folders and no rename: a folder exists
when objects lie under its prefix, a file write is one upload (a folder copy is not atomic:
`copy_tree` callers write their completion marker last).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import posixpath
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import pyarrow.fs as pafs

from detr_core.files import file_io
from detr_core.files.errors import UserInputError
from search.store.layout import json_safe


def is_uri(text: str | os.PathLike[str]) -> bool:
    """True for `scheme://...` (s3://, gs://, file://, ...); False for a plain local path."""
    return "://" in str(text)


def split_query(uri: str) -> tuple[str, str]:
    """(`scheme://path`, `?query` or ''): filesystem options ride in the query string."""
    base, sep, query = uri.partition("?")
    return base.rstrip("/"), (sep + query if sep else "")


def join_uri(uri: str, name: str) -> str:
    """`uri/name`, the query string (filesystem options) kept at the end; a local path is
    joined as a path (a `?` in it is a character)."""
    if not is_uri(uri):
        return f"{uri.rstrip('/')}/{name}"
    base, query = split_query(uri)
    return f"{base}/{name}{query}"


def split_uri(uri: str) -> tuple[str, str]:
    """(`parent URI`, `last name`) of a URI, the query string kept on the parent."""
    base, query = split_query(uri)
    parent, _, name = base.rpartition("/")
    return parent + query, name


#: Seconds a search waits out a storage URI that does not answer before it stops, resumable.
STORAGE_WAIT_ENV = "DETR_SEARCH_STORAGE_WAIT_S"
DEFAULT_STORAGE_WAIT_S = 300.0
#: What pyarrow's S3 / GCS clients say when the service, not the request, is at fault.
_UNANSWERED = ("NETWORK_CONNECTION", "curlCode", "SERVICE_UNAVAILABLE", "SLOW_DOWN",
               "INTERNAL_FAILURE", "REQUEST_TIMEOUT", "Connection reset", "Could not connect",
               "timed out", "Timeout was reached")
T = TypeVar("T")


class StorageUnavailable(OSError):
    """A storage URI did not answer for the whole wait: the search stops, resumable."""


def unanswered(exc: BaseException) -> bool:
    """True for a storage error of the network or the service (retried), not of the request
    (a missing file, denied access: raised at once)."""
    return (isinstance(exc, OSError) and not isinstance(
        exc, FileNotFoundError | PermissionError | FileExistsError | StorageUnavailable)
        and any(mark in str(exc) for mark in _UNANSWERED))


def patiently(action: Callable[[], T], where: str) -> T:
    """`action()`, retried while the storage does not answer (1 s, 2 s ... 10 s apart) for up
    to `$DETR_SEARCH_STORAGE_WAIT_S` seconds, then `StorageUnavailable`; one line when it
    starts waiting and one when the storage answers again."""
    wait_s = float(os.environ.get(STORAGE_WAIT_ENV) or DEFAULT_STORAGE_WAIT_S)
    deadline, delay, waiting = time.monotonic() + wait_s, 1.0, False
    while True:
        try:
            result = action()
        except OSError as exc:
            if not unanswered(exc):
                raise
            said = " ".join(str(exc).split())[:160]
            if time.monotonic() + delay > deadline:
                raise StorageUnavailable(f"storage {where} did not answer for {wait_s:g} s "
                                         f"({said})") from exc
            if not waiting:
                print(f"warning: storage {where} does not answer ({said}); retrying for up to "
                      f"{wait_s:g} s", file=sys.stderr, flush=True)
                waiting = True
            time.sleep(delay)
            delay = min(2 * delay, 10.0)
            continue
        if waiting:
            print(f"storage {where} answers again", file=sys.stderr, flush=True)
        return result


def _patient(method: Callable[..., T]) -> Callable[..., T]:
    """A `UriPath` method that waits out an unanswering remote storage (`patiently`)."""
    @functools.wraps(method)
    def wrapper(self: UriPath, *args: Any, **kwargs: Any) -> T:
        if self.is_local_fs:
            return method(self, *args, **kwargs)
        return patiently(lambda: method(self, *args, **kwargs), str(self))

    return wrapper


@dataclass(frozen=True)
class FileStat:
    """What `UriPath.stat()` knows: enough of `os.stat_result` for the callers here."""

    st_size: int
    st_mtime_ns: int

    @property
    def st_mtime(self) -> float:
        return self.st_mtime_ns / 1e9


class UriPath:
    """A file or folder on a `pyarrow.fs` filesystem; `str()` is its URI, by which it compares
    and sorts. `_type`: the entry type a listing gave."""

    def __init__(self, fs: pafs.FileSystem, path: str, prefix: str,
                 _type: pafs.FileType | None = None) -> None:
        self.fs = fs
        self.path = path.rstrip("/") or "/"
        self.prefix = prefix
        self._type = _type

    @classmethod
    def from_uri(cls, uri: str) -> UriPath:
        """Resolve `uri` with `pyarrow.fs.FileSystem.from_uri`; a bad one is a user error."""
        try:
            fs, path = pafs.FileSystem.from_uri(uri)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise UserInputError(f"storage URI not usable: {' '.join(str(exc).split())}",
                                 source=uri) from None
        base, _ = split_query(uri)
        path = path.rstrip("/")
        scheme = base.split("://", 1)[0] + "://"
        prefix = base[: len(base) - len(path)] if path and base.endswith(path) else scheme
        return cls(fs, path, prefix)

    def __str__(self) -> str:
        return self.prefix + self.path

    def __repr__(self) -> str:
        return f"UriPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UriPath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: UriPath) -> bool:
        return str(self) < str(other)

    def __truediv__(self, name: str | os.PathLike[str]) -> UriPath:
        joined = posixpath.normpath(f"{self.path.rstrip('/')}/{str(name).strip('/')}")
        return UriPath(self.fs, joined, self.prefix)

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.path).suffix

    @property
    def parent(self) -> UriPath:
        return UriPath(self.fs, str(PurePosixPath(self.path).parent), self.prefix)

    def relative_to(self, other: UriPath) -> PurePosixPath:
        return PurePosixPath(self.path).relative_to(other.path)

    @property
    def is_local_fs(self) -> bool:
        """True on pyarrow's LocalFileSystem (`file://`): folders are real, renames atomic."""
        return self.fs.type_name == "local"

    @_patient
    def _file_type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.path).type if self._type is None else self._type

    def exists(self) -> bool:
        return self._file_type() != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._file_type() == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._file_type() == pafs.FileType.Directory

    @_patient
    def stat(self) -> FileStat:
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(str(self))
        return FileStat(st_size=info.size or 0, st_mtime_ns=int(info.mtime_ns or 0))

    def iterdir(self) -> Iterator[UriPath]:
        """The entries directly inside this folder (none when it does not exist)."""
        for info in sorted(self._listing(), key=lambda i: i.path):
            yield UriPath(self.fs, info.path, self.prefix, _type=info.type)

    @_patient
    def _listing(self) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(
            pafs.FileSelector(self.path, allow_not_found=True, recursive=False))

    def glob(self, pattern: str) -> Iterator[UriPath]:
        """`fnmatch` patterns per path part (`checkpoint_*`, `seed_*/test_metrics.json`)."""
        level = [self]
        parts = pattern.split("/")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            level = [child for folder in level for child in folder.iterdir()
                     if fnmatch.fnmatchcase(child.name, part) and (last or child.is_dir())]
        yield from level

    @_patient
    def read_bytes(self) -> bytes:
        try:
            with self.fs.open_input_stream(self.path) as stream:
                return stream.read()
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or self.is_file():
                raise
            raise FileNotFoundError(str(self)) from exc

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    @_patient
    def write_bytes(self, data: bytes) -> int:
        """One upload (object stores) or one file write; the folder is made where needed."""
        if self.is_local_fs:
            self.fs.create_dir(self.parent.path, recursive=True)
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(data)
        self._type = pafs.FileType.File
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    @_patient
    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """A real folder on a local filesystem; nothing on an object store (no folders)."""
        if self.is_local_fs:
            if self.exists() and not exist_ok:
                raise FileExistsError(str(self))
            self.fs.create_dir(self.path, recursive=parents)

    @_patient
    def unlink(self, missing_ok: bool = False) -> None:
        if self.is_file():
            self.fs.delete_file(self.path)
        elif not missing_ok:
            raise FileNotFoundError(str(self))


#: An experiment folder or a file in it: local (`pathlib.Path`) or on a storage URI.
ExperimentPath = Path | UriPath


def location(where: str | os.PathLike[str] | UriPath) -> ExperimentPath:
    """`where` as a `UriPath` when it is a URI, else as an absolute `Path`."""
    if isinstance(where, UriPath):
        return where
    if is_uri(where):
        return UriPath.from_uri(str(where))
    return Path(where).expanduser().resolve()


def _fs_and_path(where: ExperimentPath) -> tuple[pafs.FileSystem, str]:
    if isinstance(where, UriPath):
        return where.fs, where.path
    return pafs.LocalFileSystem(), str(Path(where).resolve())


def _files_under(where: ExperimentPath) -> list[str]:
    """Paths of every file under a folder, relative to it (POSIX), sorted."""
    fs, root = _fs_and_path(where)
    selector = pafs.FileSelector(root, allow_not_found=True, recursive=True)
    return sorted(PurePosixPath(i.path).relative_to(root).as_posix()
                  for i in fs.get_file_info(selector) if i.type == pafs.FileType.File)


def copy_tree(source: ExperimentPath, target: ExperimentPath,
              exclude: Collection[str] = ()) -> list[str]:
    """Copy every file under `source` (but top-level entries in `exclude`) to the same place
    under `target`, between any two filesystems; what it copied."""
    src_fs, src_root = _fs_and_path(source)
    dst_fs, dst_root = _fs_and_path(target)
    copied = []
    for rel in _files_under(source):
        if rel.split("/", 1)[0] in exclude:
            continue
        destination = f"{dst_root.rstrip('/')}/{rel}"
        if dst_fs.type_name == "local":
            dst_fs.create_dir(str(PurePosixPath(destination).parent), recursive=True)
        pafs.copy_files(f"{src_root.rstrip('/')}/{rel}", destination,
                        source_filesystem=src_fs, destination_filesystem=dst_fs)
        copied.append(rel)
    return copied


def remove_tree(where: ExperimentPath) -> None:
    """Delete a folder and everything under it; nothing when it does not exist."""
    if not isinstance(where, UriPath):
        shutil.rmtree(where, ignore_errors=True)
    elif where.is_dir():
        where.fs.delete_dir(where.path)


def folder_has_entries(where: ExperimentPath) -> bool:
    """True when the folder exists and holds anything (an object under the prefix)."""
    return (isinstance(where, UriPath) or where.is_dir()) \
        and next(where.iterdir(), None) is not None


@contextmanager
def local_copy(where: ExperimentPath, upload_back: bool = False) -> Iterator[Path]:
    """A local folder holding `where`: itself when local, else a temporary download whose new or
    changed files go back to `where` (`upload_back`) when the block ends without error."""
    if isinstance(where, Path) or where.is_local_fs:
        yield where if isinstance(where, Path) else Path(where.path)
        return
    work = Path(tempfile.mkdtemp(prefix="detr-search-"))
    try:
        local = work / (where.name or "root")
        local.mkdir()
        copy_tree(where, local)
        downloaded = _file_stamps(local)
        yield local
        if upload_back:
            for rel, stamp in _file_stamps(local).items():
                if downloaded.get(rel) != stamp:  # written or rewritten by the caller
                    (where / rel).write_bytes((local / rel).read_bytes())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _file_stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under a local folder, by POSIX path relative to it."""
    stats = {rel: (folder / rel).stat() for rel in _files_under(folder)}
    return {rel: (stat.st_size, stat.st_mtime_ns) for rel, stat in stats.items()}


def relative_posix(target: ExperimentPath, start: ExperimentPath) -> str:
    """`target` relative to `start` (`..` where needed), POSIX style, on either kind of path."""
    if isinstance(target, UriPath) and isinstance(start, UriPath):
        return PurePosixPath(posixpath.relpath(target.path, start.path)).as_posix()
    return Path(os.path.relpath(target, start)).as_posix()  # type: ignore[arg-type]


def read_json(path: ExperimentPath) -> Any:
    """The parsed JSON file, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_bytes_atomic(path: ExperimentPath, data: bytes) -> ExperimentPath:
    """Write `data` to `path` in one rename (one upload on a storage URI)."""
    if isinstance(path, UriPath):
        path.write_bytes(data)
        return path
    return file_io.write_bytes_atomic(path, data)


def write_text_atomic(path: ExperimentPath, text: str) -> ExperimentPath:
    """Write `text` (UTF-8) to `path` in one rename (one upload on a storage URI)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: ExperimentPath, data: Any) -> ExperimentPath:
    """`data` as indented JSON (NaN written as null) in one rename."""
    return write_text_atomic(path, json.dumps(json_safe(data), indent=2, default=float) + "\n")


def display_path(path: ExperimentPath) -> str:
    """`path` relative to the working directory when inside it, else absolute (a URI as it is)."""
    if isinstance(path, UriPath):
        return str(path)
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(resolved)
