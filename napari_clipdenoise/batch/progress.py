"""Progress on the terminal: a bar over files and one over the tiles of the current file (tqdm, stderr)."""

from __future__ import annotations

import sys


class BatchProgress:
    """Two tqdm bars and messages printed without breaking them; silent (except errors) when ``quiet``."""

    def __init__(self, total_files: int, *, quiet: bool = False):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.quiet = quiet
        self.files = tqdm(
            total=total_files, unit="file", desc="files", position=0, disable=quiet, file=sys.stderr, dynamic_ncols=True
        )
        self.tiles = None
        self.name = ""

    def start_file(self, name: str) -> None:
        self.name = name  # the tile bar appears with the first progress report

    def tiles_done(self, done: int, total: int) -> None:
        """The core's ``progress(done, total)`` callback."""
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

    def end_file(self) -> None:
        if self.tiles is not None:
            self.tiles.close()
            self.tiles = None
        self.files.update(1)

    def message(self, text: str) -> None:
        if not self.quiet:
            self._tqdm.write(text, file=sys.stderr)

    def error(self, text: str) -> None:
        self._tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        if self.tiles is not None:
            self.tiles.close()
            self.tiles = None
        self.files.close()
