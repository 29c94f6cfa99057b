"""Files a run writes are written whole or not at all, and a write that cannot happen says why in one line.

:func:`atomic_write` writes to a temporary file beside the destination, flushes it to disk and renames it over
the destination (``os.replace``), then makes the rename durable: a reader, or a run killed at any instant, sees
the old file or the new one, never a half of one. A full disk, a read-only filesystem, a missing permission or a
path that runs through a file is one :class:`~frossl_lit.runtime.errors.UserError` naming the file, what is wrong and the
space needed and free; no temporary file and no empty destination is left behind. The checkpoint writer
(:class:`frossl_lit.runtime.checkpointing.AtomicCheckpointIO`) and the CSV logger (:mod:`frossl_lit.runtime.loggers`) use the same
steps.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from frossl_lit.runtime.errors import UserError

TEMP_MARK = ".tmp-"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def size_text(size: float) -> str:
    """A byte count for people: kB below 1 MiB, MiB below 128 MiB, GiB above."""
    if size < 2**20:
        return f"{size / 2**10:.1f} kB"
    return f"{size / 2**30:.2f} GiB" if size >= 2**27 else f"{size / 2**20:.1f} MiB"


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def temporary_path(path: Path) -> Path:
    """The temporary file a write of ``path`` goes through (hidden, beside it, named after this process)."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


_ELSEWHERE = "paths.output_dir=... / hydra.run.dir=..."


def write_error(path: Path, error: OSError, needed: int | None = None, elsewhere: str = _ELSEWHERE) -> UserError:
    """One line for an ``OSError`` raised while writing ``path``: what is wrong and what to do (``elsewhere``: how
    the command that writes it chooses another place)."""
    if error.errno in _NO_SPACE:
        free = free_bytes(path.parent if path.parent.exists() else Path("/"))
        sizes = f" (it needs {size_text(needed)}, {size_text(free) if free is not None else 'too little'} free)" if needed is not None else ""
        return UserError(f"cannot write {path}: its filesystem is full{sizes}; free some space, or write elsewhere "
                         f"({elsewhere})")
    reason = error.strerror or type(error).__name__
    if isinstance(error, (NotADirectoryError, FileExistsError)) or error.errno in (errno.ENOTDIR, errno.EEXIST):  # mkdir of a file
        reason = "a part of the path is a file, not a directory"
    return UserError(f"cannot write {path} ({reason}); choose a writable directory ({elsewhere})")


def replace_whole(path: Path, payload: bytes | memoryview) -> None:
    """The steps of an atomic write: a temporary file beside ``path``, flushed to disk, renamed over ``path``, the
    rename made durable. An ``OSError`` is raised as it is, with the temporary file removed."""
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    fsync_directory(path.parent)


def atomic_write(path: str | os.PathLike, data: bytes | str, elsewhere: str = _ELSEWHERE) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); returns the path. ``elsewhere`` says how
    to write it somewhere else, in the one-line error."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        replace_whole(path, payload)
    except OSError as error:
        raise write_error(path, error, len(payload), elsewhere) from None
    return path


def atomic_write_with(path: str | os.PathLike, write: Callable[[io.BytesIO], object]) -> Path:
    """:func:`atomic_write` of what ``write`` puts into a buffer (``lambda b: figure.savefig(b, format="png")``,
    ``lambda b: np.savez(b, ...)``)."""
    buffer = io.BytesIO()
    write(buffer)
    return atomic_write(path, buffer.getvalue())
