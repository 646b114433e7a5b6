"""A compact read-only results table, with copy-to-clipboard and export-to-CSV of the full records.

What is shown and what is exported differ on purpose: the table shows one score
as a small method x level grid (readable in a dock), while Copy and Export CSV
write every run as a row with every score in full precision (tidy data for a
spreadsheet or pandas).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QApplication, QHeaderView, QTableWidget, QTableWidgetItem


class ResultsTable(QTableWidget):
    """A grid of numbers under column headers (the first column names the rows); records for export."""

    def __init__(self, parent=None, *, max_visible_rows: int = 8):
        super().__init__(parent)
        self.max_visible_rows = max_visible_rows
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(False)
        self.setWordWrap(False)
        self._headers: list[str] = []
        self._rows: list[list] = []
        self.fit_height()

    def show_grid(
        self,
        corner: str,
        row_labels: Sequence[str],
        column_labels: Sequence[str],
        values: Sequence[Sequence],
        *,
        decimals: int | None = 2,
        bold: Sequence[int | None] = (),
        tooltips: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """Show ``values[r][c]`` under ``column_labels``, each row named by ``row_labels``.

        ``bold[c]`` is the row to emphasise in column c (the best value), or None.
        Numbers keep full precision in ``Qt.UserRole``; None shows as "–".
        """
        self.clear()
        self.setColumnCount(len(column_labels) + 1)
        self.setRowCount(len(row_labels))
        self.setHorizontalHeaderLabels([corner, *column_labels])
        for r, label in enumerate(row_labels):
            self.setItem(r, 0, QTableWidgetItem(label))
            for c, value in enumerate(values[r]):
                if value is None:
                    text = "–"
                elif decimals is None:
                    text = str(value)
                else:
                    text = f"{value:.{decimals}f}"
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, value)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c < len(bold) and bold[c] == r:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                if tooltips is not None:
                    item.setToolTip(tooltips[r][c])
                self.setItem(r, c + 1, item)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # the names take the slack
        self.fit_height()

    def fit_height(self) -> None:
        """As tall as its rows (up to ``max_visible_rows``), so short tables need no scrolling."""
        rows = max(1, min(self.rowCount(), self.max_visible_rows))
        row_height = self.verticalHeader().defaultSectionSize()
        header = self.horizontalHeader().sizeHint().height()
        frame = 2 * self.frameWidth()
        bar = self.horizontalScrollBar().sizeHint().height()
        self.setFixedHeight(header + rows * row_height + frame + bar)

    def displayed(self) -> list[list]:
        """The grid as shown: the row label, then each cell's full-precision value."""
        rows = []
        for r in range(self.rowCount()):
            row = [self.item(r, 0).text()]
            row += [self.item(r, c).data(Qt.ItemDataRole.UserRole) for c in range(1, self.columnCount())]
            rows.append(row)
        return rows

    def column_headers(self) -> list[str]:
        return [self.horizontalHeaderItem(c).text() for c in range(self.columnCount())]

    # ----------------------------------------------------------------- records
    def set_records(self, headers: Sequence[str], rows: Sequence[Sequence]) -> None:
        """What Copy and Export CSV write: every row, full precision."""
        self._headers = list(headers)
        self._rows = [list(row) for row in rows]

    @property
    def headers(self) -> list[str]:
        return list(self._headers)

    def rows(self) -> list[list]:
        """The full-precision records, row by row."""
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
