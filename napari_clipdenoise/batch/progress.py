"""Progress on stderr, and the ``--log`` file.

On a terminal: two tqdm bars (files, and tiles of the current file) with messages
printed above them. When stderr is not a terminal (a redirected log, a pipe, a
batch system's output file): plain lines only, no cursor-control codes, one
line per message and per finished file, and a tile line at most every
:data:`PLAIN_INTERVAL` seconds for long files.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time

#: Seconds between tile-progress lines of one file in plain (non-terminal) mode.
PLAIN_INTERVAL = 30.0
#: First line of a log file written by ``--log``; an existing file is appended to only if it starts so.
LOG_HEADER = "# clipdenoise log"


def is_log_file(path) -> bool:
    """Whether ``path`` is a log this command wrote (so ``--log`` may append to it)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
    except OSError:
        return False
    return first.startswith(LOG_HEADER) or os.path.getsize(path) == 0


class BatchProgress:
    """Files and tiles progress; messages; silent (except errors) when ``quiet``; ``detail`` only when ``verbose``.

    Parameters
    ----------
    total_files : int
        Inputs in the batch.
    quiet, verbose : bool
        ``-q``: only errors; ``-v``: also the details of each file's plan.
    plain : bool, optional
        Plain lines instead of bars; default: when stderr is not a terminal.
    log : path, optional
        Every message (whatever the verbosity), with a timestamp, is appended there.
    """

    def __init__(self, total_files: int, *, quiet: bool = False, verbose: bool = False, plain=None, log=None):
        self.quiet, self.verbose = quiet, verbose
        self.plain = (not sys.stderr.isatty()) if plain is None else plain
        self.total = total_files
        self.count = 0
        self.name = ""
        self.tiles = None
        self.files = None
        self._last_line = 0.0
        self._log = None
        if log is not None:
            new = not os.path.exists(log) or os.path.getsize(log) == 0
            self._log = open(log, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            if new:
                self._log.write(f"{LOG_HEADER} (napari-clipdenoise); one line per event, UTC times\n")
        if not self.plain:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self.files = tqdm(
                total=total_files,
                unit="file",
                desc="files",
                position=0,
                disable=quiet,
                file=sys.stderr,
                dynamic_ncols=True,
            )

    # ------------------------------------------------------------------ output
    def _print(self, text: str) -> None:
        if self.plain:
            print(text, file=sys.stderr, flush=True)
        else:
            self._tqdm.write(text, file=sys.stderr)

    def _to_log(self, level: str, text: str) -> None:
        if self._log is not None:
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            for line in text.splitlines() or [""]:
                self._log.write(f"{stamp} {level} {line}\n")
            self._log.flush()

    def message(self, text: str) -> None:
        self._to_log("info", text)
        if not self.quiet:
            self._print(text)

    def detail(self, text: str) -> None:
        """Shown with ``-v`` only (always written to the log)."""
        self._to_log("detail", text)
        if self.verbose and not self.quiet:
            self._print(text)

    def error(self, text: str) -> None:
        self._to_log("error", text)
        self._print(text)

    # ------------------------------------------------------------------ files and tiles
    def start_file(self, name: str) -> None:
        self.name = name  # the tile bar appears with the first progress report
        self._last_line = time.monotonic()

    def tiles_done(self, done: int, total: int) -> None:
        """The core's ``progress(done, total)`` callback."""
        if self.plain:
            now = time.monotonic()
            if not self.quiet and total and 0 < done < total and now - self._last_line >= PLAIN_INTERVAL:
                self._last_line = now
                self._print(f"{self.name}: {done}/{total} tiles ({100 * done / total:.0f}%)")
            return
        if self.tiles is None:
            self.tiles = self._tqdm(
                total=total,
                unit="tile",
                desc=self.name,
                position=1,
                leave=False,
                disable=self.quiet,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        if self.tiles.total != total:
            self.tiles.total = total
            self.tiles.refresh()
        if done > self.tiles.n:
            self.tiles.update(done - self.tiles.n)

    def end_file(self, status: str | None = None, seconds: float | None = None) -> None:
        self.count += 1
        if status is not None:
            took = f" in {seconds:.1f} s" if seconds else ""
            line = f"[{self.count}/{self.total}] {self.name}: {status}{took}"
            self._to_log("info", line)
            if self.plain and not self.quiet and status == "done":
                self._print(line)
        if self.tiles is not None:
            self.tiles.close()
            self.tiles = None
        if self.files is not None:
            self.files.update(1)

    def close(self) -> None:
        if self.tiles is not None:
            self.tiles.close()
            self.tiles = None
        if self.files is not None:
            self.files.close()
        if self._log is not None:
            self._log.close()
            self._log = None
