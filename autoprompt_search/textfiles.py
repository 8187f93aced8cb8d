"""The one way the tool reads text: files, stdin and command-line values, all as UTF-8.

Why one module: every reader (templates, mappings, configs, task files, data files, prompt files,
predict inputs) must fail the same way on bad bytes, naming the file and the byte offset in one
line instead of a UnicodeDecodeError traceback, and must read a file saved with a UTF-8 byte-order
mark or Windows line endings as exactly the same data as a plain UTF-8 file.
"""
from __future__ import annotations

import codecs
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, TextIO

from .errors import UserError

BOM = codecs.BOM_UTF8


def _normalise(text: str) -> str:
    """CRLF and lone CR become LF, as Python's universal newlines read them."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _encoding_error(source: str, data: bytes, offset: int) -> UserError:
    line = data.count(b"\n", 0, offset) + 1
    return UserError(f"{source}: not valid UTF-8 text: byte 0x{data[offset]:02x} at byte offset {offset} "
                     f"(line {line}); save it as UTF-8")


def decode_text(data: bytes, source: str | Path) -> str:
    """UTF-8 bytes -> text with LF line ends; a leading BOM is dropped. `source` names the bytes in
    errors (e.g. "template file t.txt")."""
    skip = len(BOM) if data.startswith(BOM) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as error:
        raise _encoding_error(str(source), data, skip + error.start) from None
    return _normalise(text)


def require_file(path: str | Path, what: str = "file") -> Path:
    """`path` as a Path, or a one-line error saying which kind of file is missing or unreadable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; expected a file")
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    return path


def read_text(path: str | Path, what: str = "file") -> str:
    """A whole text file (UTF-8, optional BOM, any line ends) with one-line errors naming it."""
    path = require_file(path, what)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{what} {path} cannot be read: {error.strerror or error}") from None
    return decode_text(data, f"{what} {path}")


def read_lines(path: str | Path, what: str = "file") -> list[str]:
    """The lines of a text file, without their line ends."""
    return read_text(path, what).splitlines()


def check_text(text: str, source: str) -> str:
    """Text from the command line (or any str that came from bytes with surrogateescape): an error
    naming `source` and the byte offset when it holds bytes that were not UTF-8; BOM and CR dropped."""
    for index, char in enumerate(text):
        if "\udc80" <= char <= "\udcff":
            offset = len(text[:index].encode("utf-8", "surrogateescape"))
            raise UserError(f"{source}: not valid UTF-8 text: byte 0x{ord(char) - 0xdc00:02x} at byte offset "
                            f"{offset}")
        if "\ud800" <= char <= "\udfff":
            raise UserError(f"{source}: not valid text: lone surrogate U+{ord(char):04X} at character {index}")
    return _normalise(text.removeprefix("\ufeff"))


def read_stream(stream: TextIO | BinaryIO, source: str = "stdin") -> str:
    """All of a stream (stdin): its bytes decoded as a file's are, so bad bytes name `source` and the
    offset instead of raising UnicodeDecodeError inside the stream's own decoder."""
    raw = getattr(stream, "buffer", None)
    if raw is not None:
        return decode_text(raw.read(), source)
    data = stream.read()
    if isinstance(data, bytes):
        return decode_text(data, source)
    return check_text(data, source)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a temporary file unique to this writer, flushed and then
    renamed over `path`: a reader sees the old file or the new one, never half of one, and two writers
    never rename each other's temporary file away."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; output files are plain 0644
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
