"""Reading a user's text file (run YAML, search space, COCO JSON) with one-line errors.

A file that is not UTF-8 text must not end in a `UnicodeDecodeError` traceback that does not
even name the file. `read_user_text` says what the file is instead: a folder, gzip or zip
data, UTF-16 text, a binary file, or Windows-1252 / Latin-1 text, with the line and column of
the first byte that is not UTF-8. A UTF-8 byte-order mark (Windows editors write one) is
accepted and dropped.
"""

from __future__ import annotations

import codecs
from pathlib import Path

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
