"""Exceptions with messages meant for the person who runs the tool."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A weights file is unreadable, of an unknown format, or does not fit the network."""


class ModelNotInstalledError(FileNotFoundError):
    """A registry model was asked for by name but its weights are not in the cache."""


class DenoiseCancelled(RuntimeError):
    """A run was cancelled through its ``cancel`` callback or event; nothing was returned."""


class AdaptCancelled(DenoiseCancelled):
    """An adaptation run was cancelled; nothing was installed. ``state_path`` resumes it (None: not saved)."""

    def __init__(self, message: str, state_path=None):
        super().__init__(message)
        self.state_path = state_path
