"""Under the model picker: what the model is, or (when it cannot be used) what to do, as buttons.

The no-model state is two lines: a sentence with a clickable link to where the
weights come from, and a row of buttons (Install…, Load…, i.e. Install/Load checkpoint…;
``add_action_button`` puts more there, e.g. a Download button).
"""

from __future__ import annotations

import html

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from ..model.summary import ModelSummary

INFO_STYLE = "color: #9aa0a6;"
WARNING_STYLE = "color: #ffb347;"
LINK_STYLE = "color: #8ab4f8;"  # readable on napari's dark theme (Qt's default link blue is not)


class ModelStatePanel(QWidget):
    """The selected model's one-line description, or the no-model state with its buttons.

    Signals
    -------
    install_clicked(), load_clicked()
    """

    install_clicked = Signal()
    load_clicked = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.info = QLabel(self)
        self.info.setWordWrap(True)
        self.info.setStyleSheet(INFO_STYLE)
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.missing = QWidget(self)
        self.message = QLabel(self.missing)
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.RichText)
        self.message.setOpenExternalLinks(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.message.setStyleSheet(WARNING_STYLE)
        self.message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.install_button = QPushButton("Install…", self.missing)  # short: three buttons fit a laptop dock
        self.install_button.setToolTip(
            "Install checkpoint…: pick a checkpoint file (.pth from the authors' release, or .safetensors):"
            " it is checked and installed in the model cache, then selected"
        )
        self.load_button = QPushButton("Load…", self.missing)
        self.load_button.setToolTip("Load checkpoint…: use a checkpoint file for this session without installing it")
        self.actions = QHBoxLayout()
        self.actions.setContentsMargins(0, 0, 0, 0)
        self.actions.addWidget(self.install_button)
        self.actions.addWidget(self.load_button)
        missing_layout = QVBoxLayout(self.missing)
        missing_layout.setContentsMargins(0, 0, 0, 0)
        missing_layout.setSpacing(2)
        missing_layout.addWidget(self.message)
        missing_layout.addLayout(self.actions)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.info)
        layout.addWidget(self.missing)
        self.install_button.clicked.connect(self.install_clicked)
        self.load_button.clicked.connect(self.load_clicked)
        self.missing.setVisible(False)

    def add_action_button(self, button: QPushButton) -> None:
        """Put another button in the no-model row (after Install and Load), e.g. "Download"."""
        button.setParent(self.missing)
        self.actions.addWidget(button)

    @property
    def showing_missing(self) -> bool:
        return not self.missing.isHidden()

    def show_summary(self, summary: ModelSummary | None, *, any_loadable: bool) -> None:
        """Describe ``summary``, or show the no-model state when it cannot be loaded."""
        if summary is None or not summary.loadable:
            self.info.setVisible(False)
            self.message.setText(_missing_text(summary, any_loadable))
            self.message.setToolTip(summary.hint if summary is not None else "")
            self.missing.setVisible(True)
            return
        self.missing.setVisible(False)
        text = html.escape(summary.description, quote=False)
        if summary.warning:
            text += f' <span style="{WARNING_STYLE}">⚠ {html.escape(summary.warning, quote=False)}.</span>'
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setText(text)
        self.info.setToolTip(summary.family_name and f"Network: {summary.family_name}")
        self.info.setVisible(bool(text))


def _missing_text(summary: ModelSummary | None, any_loadable: bool) -> str:
    if summary is None:
        return "No model is selected."
    if summary.kind == "file":
        return f"Checkpoint file not found: {html.escape(str(summary.source))}."
    lead = "No model installed yet" if not any_loadable else f"<b>{html.escape(summary.name)}</b> is not installed"
    if summary.release:
        link = f'<a style="{LINK_STYLE}" href="{html.escape(summary.release)}">the authors\' weights</a>'
        return f"{lead}: get {link}, then install them."
    return f"{lead}."
