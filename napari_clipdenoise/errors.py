"""Exceptions with messages meant for the person who runs the tool."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A weights file is unreadable, of an unknown format, or does not fit the network."""


class ModelNotInstalledError(FileNotFoundError):
    """A registry model was asked for by name but its weights are not in the cache."""


class DenoiseCancelled(RuntimeError):
    """A run was cancelled through its ``cancel`` callback or event; nothing was returned."""
