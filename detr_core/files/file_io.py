"""The files users give (text, YAML) and the files runs write (atomically, at fixed names).

`read_user_text` names a file that is not UTF-8 instead of a `UnicodeDecodeError` traceback.
YAML floats are read as YAML 1.2 reads them (PyYAML's 1.1 reads `2e-4` as a string) and a key
given twice is an error (PyYAML keeps the last, turning a searched range into a fixed value).
A file is written to a hidden sibling and renamed over its target, so a killed process leaves
the old or the new file (at worst plus a stale `.<name>.tmp-<pid>`); a folder is swapped by
moving the old one aside first, so a crash never leaves a half-copied one.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from detr_core.files.errors import UserInputError

#: Leading bytes of what people hand over by mistake (UTF-32's mark starts with UTF-16's).
_NOT_TEXT: tuple[tuple[bytes | tuple[bytes, ...], str], ...] = (
    ((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE), "UTF-32 text; save it as UTF-8"),
    ((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), "UTF-16 text; save it as UTF-8"),
    (b"\x1f\x8b", "gzip-compressed data, not text (decompress it first)"),
    (b"PK\x03\x04", "a zip archive, not text (extract it first)"),
    (b"\x89PNG", "a PNG image, not text"),
    (b"\xff\xd8\xff", "a JPEG image, not text"),
    (b"BZh", "bzip2-compressed data, not text (decompress it first)"),
    (b"\xfd7zXZ\x00", "xz-compressed data, not text (decompress it first)"),
)


def read_user_text(path: str | Path) -> str:
    """The file's text as UTF-8 (a byte-order mark dropped), else a `UserInputError` naming
    what it is (a folder, compressed, UTF-16 or binary data, Windows-1252 text)."""
    path = Path(path)
    if path.is_dir():
        yaml_files = sorted(p.name for p in path.glob("*.yaml"))
        hint = f" (it holds {', '.join(yaml_files[:4])})" if yaml_files else ""
        raise UserInputError(f"is a folder, not a file{hint}", source=path)
    if not path.is_file():
        raise UserInputError("file not found", source=path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserInputError(f"cannot be read: {exc.strerror or exc}", source=path) from None
    for signature, what in _NOT_TEXT:
        if data.startswith(signature):
            raise UserInputError(f"is {what}", source=path)
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start)
        problem = f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column {column}"
        with contextlib.suppress(UnicodeDecodeError):
            data.decode("cp1252")
            problem += " (it looks like Windows-1252 / Latin-1 text)"
        raise UserInputError(problem + "; save the file as UTF-8", source=path) from None
    if "\x00" in text:
        line, column = _position(data, data.index(b"\x00"))
        raise UserInputError(f"is a binary file, not text (a NUL byte at line {line}, "
                             f"column {column})", source=path)
    return text


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of byte `offset`."""
    return data.count(b"\n", 0, offset) + 1, offset - data.rfind(b"\n", 0, offset)


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-4`, `5E3` and `.5` as floats and refuses a key given twice."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _construct_mapping_once(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """SafeLoader's mapping constructor, refusing a key given twice (merge keys aside)."""
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
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (first "
                                                    f"given at line {first})", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_once)


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping; errors name the file."""
    return parse_yaml_mapping(read_user_text(path), Path(path))


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
        return {}
    if not isinstance(data, dict):
        raise UserInputError(f"top level must be a mapping, got {type(data).__name__}",
                             source=source)
    return data


def loads_yaml(text: str) -> Any:
    """Parse YAML text with the same float rules as `load_yaml_mapping`."""
    return yaml.load(text, Loader=_Loader)


def dump_yaml(data: Any, path: str | Path, header: str = "") -> None:
    """Write `data` atomically as block-style YAML in insertion order, with a `# header`."""
    write_text_atomic(Path(path), dumps_yaml(data, header))


def dumps_yaml(data: Any, header: str = "") -> str:
    """`data` as the text `dump_yaml` writes (for files written elsewhere than a local path)."""
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text


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


EVAL_HISTORY_FILE = "eval_history.jsonl"  # one JSON object per evaluation: step, eval metrics
CHECKPOINTS_DIR = "checkpoints"  # the Trainer's best-step checkpoint (model + optimizer state)
EMA_DIR = "ema"  # checkpoints/checkpoint-N/ema/: the averaged weights (a run with `ema:`)
TENSORBOARD_DIR = "tensorboard"
BEST_MODEL_DIR = "best_model"  # `save_pretrained` folder of the best step, reloaded and re-saved
BEST_STEP_FILE = "best_step.json"  # in best_model/: which step, by which metric, which value
TEST_METRICS_FILE = "test_metrics.json"  # in best_model/ (with a test split), see below
CATEGORIES_FILE = "categories.json"  # COCO category ids and names, in the model's label order


def metrics_file(split: str) -> str:
    """Metrics of a split beside the model (`test_metrics.json`, `val_metrics.json`)."""
    return f"{split}_metrics.json"


def predictions_file(split: str) -> str:
    """Detections of a split in COCO results format beside the model (`test_predictions.json`)."""
    return f"{split}_predictions.json"


def detections_image(split: str) -> str:
    """Ground truth beside confident detections for a split's first images."""
    return f"{split}_detections.png"
