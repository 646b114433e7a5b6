"""Disk space and write errors: reserving an output's blocks, and write errors in words.

Low in the formats package (the TIFF and NPY writers use it); the rules about
which outputs may be written live in :mod:`.safety`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def reserve_space(path: str | os.PathLike) -> None:
    """Allocate every block of the file ``path`` (as long as it is now) on its file system.

    Memory-mapped outputs are created sparse; a write into a page the full file
    system cannot back kills the process with SIGBUS. Reserving the blocks first
    turns that into an ``OSError`` (ENOSPC) here, before any pixel is computed.
    File systems without ``fallocate`` are left as they are (glibc emulates it on most).
    """
    size = os.path.getsize(path)
    if size == 0 or not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    finally:
        os.close(fd)


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the file system holding ``path`` (or its nearest existing parent)."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return current


def is_write_error(exc: BaseException) -> bool:
    """An OSError that says the file system refused a write (full, quota, read-only, I/O error)."""
    return isinstance(exc, OSError) and exc.errno in (
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EIO,
        errno.EFBIG,
    )


def write_error_message(exc: OSError, path: str | os.PathLike) -> str:
    """``exc`` raised while writing ``path``, in words, with what to do."""
    where = mount_point(path)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        return f"{what} on {where} while writing {path}; free space there or write the results elsewhere"
    if exc.errno == errno.EROFS:
        return f"the file system at {where} is read-only; cannot write {path}"
    if exc.errno == errno.EIO:
        return f"input/output error on {where} while writing {path} (a failing disk or a lost network mount?)"
    if exc.errno == errno.EFBIG:
        return f"{path} would be larger than the file system at {where} allows for one file"
    return f"cannot write {path}: {exc.strerror or exc}"


__all__ = ["is_write_error", "mount_point", "reserve_space", "write_error_message"]
