"""Private files: the files kamflow creates hold names and email addresses, so only their owner
may read them, whatever the umask."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from kamflow import defaults
from kamflow.errors import InvalidInput


@contextmanager
def private_file(
    target: Path,
    *,
    binary: bool = False,
    encoding: str | None = "utf-8",
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """A file to write that replaces ``target`` when the block ends without error, whole or not
    at all, readable and writable by its owner only (also when it replaces an existing file).

    An OSError while creating, writing or renaming is raised to the caller; the half-written
    file is removed.
    """
    handle, temporary = tempfile.mkstemp(
        dir=target.resolve().parent, prefix=f".{target.name}-", suffix=".tmp"
    )
    try:
        # mkstemp already creates it 0600; say so here rather than rely on that.
        os.fchmod(handle, defaults.PRIVATE_FILE_MODE)
        if binary:
            out: IO[Any] = os.fdopen(handle, "wb")
        else:
            out = os.fdopen(handle, "w", encoding=encoding, newline=newline)
        with out:
            yield out
        # The rename puts the new file (and its mode) in place of any older one.
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_private(
    file: str, chunks: Iterable[str] | Iterable[bytes], *, binary: bool = False
) -> Path:
    """Write ``chunks`` (text in UTF-8, or bytes with ``binary``) to ``file`` as private_file()
    does: whole or not at all, readable by its owner only. InvalidInput naming the file when it
    cannot be written."""
    target = Path(file)
    try:
        with private_file(target, binary=binary) as out:
            for chunk in chunks:
                out.write(chunk)
    except OSError as error:
        raise InvalidInput(f"cannot write {file}: {error.strerror or error}") from None
    return target


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and private when it does not exist; an existing file, whoever made
    it, is left as it is. True when it was created here."""
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, defaults.PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    try:
        # os.open's mode passes through the umask; a restrictive umask must not make it unusable.
        os.fchmod(handle, defaults.PRIVATE_FILE_MODE)
    finally:
        os.close(handle)
    return True


def create_private_folder(path: Path) -> None:
    """Make the folder ``path`` (and its missing parents) when it does not exist; the folder made
    here is private (0700). An existing folder is left as it is."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=defaults.PRIVATE_FOLDER_MODE)
    except FileExistsError:
        if path.is_dir():  # made meanwhile by another process: theirs to keep as it is
            return
        raise
    os.chmod(path, defaults.PRIVATE_FOLDER_MODE)  # mkdir's mode passes through the umask
