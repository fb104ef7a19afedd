"""Reading a user's text file (run YAML, search space, COCO JSON) with one-line errors.

A file that is not UTF-8 text must not end in a `UnicodeDecodeError` traceback that does not
even name the file. `read_user_text` says what the file is instead: a folder, gzip or zip
data, UTF-16 text, a binary file, or Windows-1252 / Latin-1 text, with the line and column of
the first byte that is not UTF-8. A UTF-8 byte-order mark (Windows editors write one) is
accepted and dropped.

YAML reading and writing shared by run configs and search spaces.

PyYAML follows YAML 1.1, where `2e-4` (no dot) is a *string*; learning rates are written that
way by everyone, so the loader here resolves every float spelling YAML 1.2 accepts. A key
written twice in one mapping is an error (PyYAML would silently keep the last one, turning a
searched range into a fixed value). Reading errors, encodings included
(`detr_core.files.file_io`), come back as `UserInputError` naming the file. Writing is atomic.

Writing output files and folders so that a crash never leaves a truncated one.

Every writer of a file someone reads later (best_config.yaml, trials.csv, REPORT.md,
test_metrics.json, best_step.json, best_model/) goes through here: the content is written to a
hidden temporary sibling, flushed to disk, and renamed over the target in one step. A process
killed at any moment leaves either the old complete file or the new complete one, at worst
plus a stale `.<name>.tmp-<pid>` that the next write of the same file replaces
(`remove_stale_temporaries` sweeps them).

Folders cannot be swapped in one rename when the target exists: `replace_folder` moves the old
one aside first, so a crash in between leaves no target at all (and the old copy beside it),
never a half-copied one.

What one `detr_core` run writes into its output folder, by name: defined once.

    <output-dir>/
      eval_history.jsonl      one JSON object per evaluation (step + every eval metric)
      checkpoints/            the Trainer's best-step checkpoint (model + optimizer state)
        checkpoint-N/ema/     the averaged weights at that step (a run with `ema:`)
      tensorboard/            TensorBoard event files
      best_model/             `save_pretrained` folder of the best step, reloaded and re-saved
        best_step.json        which step, by which metric, with which value
        test_metrics.json     test-split metrics of the best step (when there is a test split)
        test_predictions.json its detections in COCO results format
        test_detections.png   test images: ground truth beside confident detections
        categories.json       COCO category ids and names, in the model's label order

The search layer reads these names from here instead of spelling them again.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from detr_core.files.errors import UserInputError

#: Leading bytes of formats people hand over by mistake, and what to call them.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed data, not text (decompress it first)"),
    (b"PK\x03\x04", "a zip archive, not text (extract it first)"),
    (b"\x89PNG", "a PNG image, not text"),
    (b"\xff\xd8\xff", "a JPEG image, not text"),
    (b"BZh", "bzip2-compressed data, not text (decompress it first)"),
    (b"\xfd7zXZ\x00", "xz-compressed data, not text (decompress it first)"),
)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


def check_is_file(path: Path) -> None:
    """`UserInputError` naming `path` when it is missing or a folder."""
    if path.is_dir():
        yaml_files = sorted(p.name for p in path.glob("*.yaml"))
        hint = f" (it holds {', '.join(yaml_files[:4])})" if yaml_files else ""
        raise UserInputError(f"is a folder, not a file{hint}", source=path)
    if not path.is_file():
        raise UserInputError("file not found", source=path)


def read_user_text(path: str | Path) -> str:
    """The file's text, decoded as UTF-8; anything else is a `UserInputError` naming it."""
    path = Path(path)
    check_is_file(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserInputError(f"cannot be read: {exc.strerror or exc}", source=path) from None
    return decode_user_text(data, path)


def decode_user_text(data: bytes, path: str | Path) -> str:
    """`data` (the bytes of `path`) as text; see `read_user_text`."""
    if data.startswith(_UTF32_BOMS):
        raise UserInputError("is UTF-32 text; save it as UTF-8", source=path)
    if data.startswith(_UTF16_BOMS):
        raise UserInputError("is UTF-16 text; save it as UTF-8", source=path)
    for signature, what in _BINARY_SIGNATURES:
        if data.startswith(signature):
            raise UserInputError(f"is {what}", source=path)
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(_not_utf8(data, exc.start), source=path) from None
    if "\x00" in text:
        line, column = _position(data, data.index(b"\x00"))
        raise UserInputError(f"is a binary file, not text (a NUL byte at line {line}, "
                             f"column {column})", source=path)
    return text


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of byte `offset`."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _not_utf8(data: bytes, offset: int) -> str:
    line, column = _position(data, offset)
    problem = f"not UTF-8 text: byte 0x{data[offset]:02x} at line {line}, column {column}"
    try:
        data.decode("cp1252")
        problem += " (it looks like Windows-1252 / Latin-1 text)"
    except UnicodeDecodeError:
        pass
    return problem + "; save the file as UTF-8"


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-4`, `5E3` and `.5` as floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice."""


def _construct_mapping_once(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """SafeLoader's mapping constructor, refusing a key given twice (merge keys `<<` aside)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: SafeLoader reports it itself
            continue
        if first is not None:
            raise DuplicateKeyError(
                None, None, f"duplicate key {key!r} (first given at line {first})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_once)


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping; errors name the file."""
    path = Path(path)
    text = read_user_text(path)
    return parse_yaml_mapping(text, path)


def parse_yaml_mapping(text: str, source: str | Path) -> dict[str, Any]:
    """YAML text whose top level must be a mapping (read from anywhere); errors name `source`."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserInputError(f"not valid YAML{where}: {problem}", source=source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserInputError(f"top level must be a mapping, got {type(data).__name__}",
                             source=source)
    return data


def loads_yaml(text: str) -> Any:
    """Parse YAML text with the same float rules as `load_yaml_mapping`."""
    return yaml.load(text, Loader=_Loader)


def dump_yaml(data: Any, path: str | Path, header: str = "") -> None:
    """Write `data` as block-style YAML, keys in insertion order, with an optional # header.

    Written atomically: a crash never leaves a truncated file."""
    write_text_atomic(Path(path), dumps_yaml(data, header))


def dumps_yaml(data: Any, header: str = "") -> str:
    """`data` as the text `dump_yaml` writes (for files written elsewhere than a local path)."""
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    return text


TEMP_MARK = ".tmp-"


def temp_path(path: Path) -> Path:
    """The hidden temporary sibling this process writes `path` to before renaming it."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` in one rename (flushed to disk first)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` in one rename."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """`data` as JSON in one rename (callers make NaN JSON-safe first if they need to)."""
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def staging_folder(target: Path) -> Path:
    """A fresh hidden folder beside `target` to build its new content in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}{TEMP_MARK}", dir=target.parent))


def replace_folder(staging: Path, target: Path) -> Path:
    """Put the complete folder `staging` in place of `target` (see the module docstring)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old{TEMP_MARK}", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def remove_stale_temporaries(folder: Path, name: str = "") -> None:
    """Delete what a killed writer of `folder/name` left: `.<name>.tmp-*`, `.<name>.old.tmp-*`
    (every such leftover in `folder` when `name` is empty)."""
    for stale in folder.glob(f".{name}*{TEMP_MARK}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


EVAL_HISTORY_FILE = "eval_history.jsonl"
CHECKPOINTS_DIR = "checkpoints"
EMA_DIR = "ema"
TENSORBOARD_DIR = "tensorboard"
BEST_MODEL_DIR = "best_model"
BEST_STEP_FILE = "best_step.json"
TEST_METRICS_FILE = "test_metrics.json"
CATEGORIES_FILE = "categories.json"


def metrics_file(split: str) -> str:
    """`test_metrics.json` and its siblings for other splits (`val_metrics.json`)."""
    return f"{split}_metrics.json"


def predictions_file(split: str) -> str:
    """Detections of a split in COCO results format (`test_predictions.json`)."""
    return f"{split}_predictions.json"


def detections_image(split: str) -> str:
    """Ground truth beside detections for the first images of a split (`test_detections.png`)."""
    return f"{split}_detections.png"
