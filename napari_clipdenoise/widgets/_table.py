"""A read-only results table with copy-to-clipboard and export-to-CSV."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QApplication, QHeaderView, QTableWidget, QTableWidgetItem


class ResultsTable(QTableWidget):
    """Rows of values under fixed column headers; numbers are shown rounded but copied/exported in full."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self._headers: list[str] = []
        self._rows: list[list] = []

    def set_rows(self, headers: Sequence[str], rows: Sequence[Sequence], decimals: Sequence[int | str | None]) -> None:
        """Show ``rows``, formatting column i for display with ``decimals[i]``.

        An int rounds to that many places, a string is a format spec (e.g. ``"g"``),
        None shows the value as is.
        """
        self._headers = list(headers)
        self._rows = [list(row) for row in rows]
        self.clear()
        self.setColumnCount(len(headers))
        self.setRowCount(len(rows))
        self.setHorizontalHeaderLabels(self._headers)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                places = decimals[c] if c < len(decimals) else None
                if value is None:
                    text = ""
                elif isinstance(places, int):
                    text = f"{value:.{places}f}"
                elif isinstance(places, str):
                    text = format(value, places)
                else:
                    text = str(value)
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, value)
                if places is not None:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(r, c, item)

    @property
    def headers(self) -> list[str]:
        return list(self._headers)

    def rows(self) -> list[list]:
        """The full-precision values, row by row."""
        return [list(row) for row in self._rows]

    def to_text(self, delimiter: str = ",") -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
        writer.writerow(self._headers)
        writer.writerows([["" if v is None else v for v in row] for row in self._rows])
        return buffer.getvalue()

    def copy_to_clipboard(self) -> str:
        """Copy as tab-separated text (pastes into spreadsheets); returns the text."""
        text = self.to_text("\t")
        QApplication.clipboard().setText(text)
        return text

    def export_csv(self, path: str | os.PathLike) -> None:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            handle.write(self.to_text(","))
