"""Atomic output: write to a hidden temporary path in the target folder, rename into place.

A crash, ``kill -9`` or Ctrl-C therefore never leaves a partial file under the
final name. Temporary paths are ``.partial-<pid>-<final name>`` (hidden, and they
keep the real extension so format libraries recognise them); ones left behind by
a killed process are removed by :func:`remove_stale_partials` on the next run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

PARTIAL_PREFIX = ".partial-"


def partial_path(final: Path, pid: int | None = None) -> Path:
    """The temporary path this process uses while writing ``final``."""
    return final.parent / f"{PARTIAL_PREFIX}{os.getpid() if pid is None else pid}-{final.name}"


def is_partial(path: Path) -> bool:
    return path.name.startswith(PARTIAL_PREFIX)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_partials(final: Path) -> list[Path]:
    """Delete temporary files for ``final`` left by processes that no longer run; return them."""
    removed = []
    for candidate in final.parent.glob(f"{PARTIAL_PREFIX}*-{final.name}"):
        pid_text = candidate.name[len(PARTIAL_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            _remove(candidate)
            removed.append(candidate)
    return removed


def _replace(temporary: Path, final: Path) -> None:
    if not temporary.is_dir():
        os.replace(temporary, final)  # atomic on POSIX and Windows (same folder)
        return
    # Directories (zarr stores) cannot replace a non-empty directory atomically:
    # move the old one aside first, so ``final`` is always either old or new, never mixed.
    if final.exists():
        aside = final.parent / f"{PARTIAL_PREFIX}{os.getpid()}-old-{final.name}"
        os.rename(final, aside)
        os.rename(temporary, final)
        _remove(aside)
    else:
        try:
            os.rename(temporary, final)
        except OSError as exc:  # created concurrently
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError(f"{final} appeared while it was being written; not replaced") from exc
            raise


@contextlib.contextmanager
def atomic_output(final: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it to ``final`` when the block succeeds.

    On any exception (including ``KeyboardInterrupt`` and ``SystemExit``) the
    temporary file or folder is removed and the exception propagates; ``final``
    is untouched. Without ``overwrite`` an existing ``final`` raises
    ``FileExistsError`` before anything is written.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists (use --overwrite to replace it)")
    temporary = partial_path(final)
    _remove(temporary)
    try:
        yield temporary
        if not temporary.exists():
            raise RuntimeError(f"nothing was written to {temporary}")
        _replace(temporary, final)
    except BaseException:
        _remove(temporary)
        raise


def write_text_atomic(final: str | os.PathLike, text: str) -> Path:
    """Write a small text file (a sidecar, a report) atomically, replacing any old one."""
    final = Path(final)
    with atomic_output(final, overwrite=True) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return final
