"""Shared fixtures: random-weight checkpoints in real file layouts and an isolated model cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Nothing in the test suite may reach the internet or a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def isolated_model_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty model cache, so nothing leaks from the user's real cache."""
    cache = tmp_path_factory.mktemp("model-cache")
    monkeypatch.setenv("CLIPDENOISE_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def rgb_checkpoint(tmp_path_factory):
    """A project-format RGB checkpoint with seeded random weights."""
    from napari_clipdenoise.model.testing import write_project_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "random_rgb.safetensors"
    write_project_checkpoint(path, 3, seed=0)
    return path


@pytest.fixture(scope="session")
def gray_checkpoint(tmp_path_factory):
    """A project-format 1-channel checkpoint with seeded random weights."""
    from napari_clipdenoise.model.testing import write_project_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "random_gray.safetensors"
    write_project_checkpoint(path, 1, seed=1)
    return path


@pytest.fixture(scope="session")
def rgb_model(rgb_checkpoint):
    from napari_clipdenoise import load_model

    return load_model(rgb_checkpoint)


@pytest.fixture(scope="session")
def gray_model(gray_checkpoint):
    from napari_clipdenoise import load_model

    return load_model(gray_checkpoint)


@pytest.fixture
def installed_gaussian15(isolated_model_cache, rgb_checkpoint):
    """The registry name 'gaussian15' installed (random weights) in the isolated cache."""
    from napari_clipdenoise import install_model

    return install_model(rgb_checkpoint, "gaussian15")


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one torch thread is several times faster than two when processes share 2 cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
