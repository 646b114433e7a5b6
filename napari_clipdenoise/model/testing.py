"""Seeded random-weight checkpoints in the exact file layouts users bring.

No trained weights can be downloaded in CI, so tests, benchmarks and demos build
files with the real architecture and random weights: the project format, the
authors' reference ``{'params': ...}`` layout (with layer4 keys), and CLIP RN50
files (open_clip ``visual.*`` safetensors). Outputs of such models are not
denoised images; they exercise every code path with the real shapes and cost.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .network import CLIPDenoiser, NetworkConfig, init_random_weights


def random_network(in_channels: int = 3, *, seed: int = 0, bias: bool = False) -> CLIPDenoiser:
    config = NetworkConfig(in_channels=in_channels, out_channels=in_channels, bias=bias)
    return init_random_weights(CLIPDenoiser(config), seed).eval()


def _layer4_state(seed: int) -> dict[str, torch.Tensor]:
    """Random tensors with the names and shapes of CLIP RN50's layer4 (3 bottlenecks, 2048 ch)."""
    generator = torch.Generator().manual_seed(seed + 4)
    state: dict[str, torch.Tensor] = {}

    def conv(name, cout, cin, k):
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=generator) * 0.01

    def bn(name, c):
        state[f"{name}.weight"] = torch.ones(c)
        state[f"{name}.bias"] = torch.zeros(c)
        state[f"{name}.running_mean"] = torch.zeros(c)
        state[f"{name}.running_var"] = torch.ones(c)
        state[f"{name}.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)

    for block in range(3):
        prefix = f"layer4.{block}"
        cin = 1024 if block == 0 else 2048
        conv(f"{prefix}.conv1", 512, cin, 1)
        bn(f"{prefix}.bn1", 512)
        conv(f"{prefix}.conv2", 512, 512, 3)
        bn(f"{prefix}.bn2", 512)
        conv(f"{prefix}.conv3", 2048, 512, 1)
        bn(f"{prefix}.bn3", 2048)
        if block == 0:
            conv(f"{prefix}.downsample.0", 2048, 1024, 1)
            bn(f"{prefix}.downsample.1", 2048)
    return state


def reference_state_dict(network: CLIPDenoiser, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """The network's weights under the reference checkpoint's key names (341/342 keys)."""
    state = dict(network.state_dict())
    state.update({f"encoder.{k}": v for k, v in _layer4_state(seed).items()})
    return state


def write_reference_checkpoint(
    path: str | os.PathLike, in_channels: int = 3, *, seed: int = 0, bias: bool = False
) -> CLIPDenoiser:
    """Write a BasicSR-style ``{'params': state_dict}`` file; return the network it holds."""
    network = random_network(in_channels, seed=seed, bias=bias)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": reference_state_dict(network, seed=seed)}, path)
    return network


def write_project_checkpoint(
    path: str | os.PathLike, in_channels: int = 3, *, seed: int = 0, **metadata
) -> CLIPDenoiser:
    """Write a project-format ``.safetensors`` file with random weights; return its network."""
    from .checkpoints import save_checkpoint

    network = random_network(in_channels, seed=seed)
    meta = {"name": Path(path).stem, "noise": "none (random weights for testing)", "random_weights": True}
    meta.update(metadata)
    save_checkpoint(network, path, meta)
    return network


def clip_visual_state_dict(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """A CLIP RN50 ``visual.*`` state dict (stem..layer4 + attnpool), as OpenAI/open_clip ship it."""
    encoder = init_random_weights(CLIPDenoiser(), seed).encoder
    state = {f"visual.{k}": v.to(dtype) if v.is_floating_point() else v for k, v in encoder.state_dict().items()}
    state.update({f"visual.{k}": v.to(dtype) if v.is_floating_point() else v for k, v in _layer4_state(seed).items()})
    generator = torch.Generator().manual_seed(seed + 7)
    for name, shape in {
        "attnpool.positional_embedding": (50, 2048),
        "attnpool.k_proj.weight": (2048, 2048),
        "attnpool.c_proj.weight": (1024, 2048),
    }.items():
        state[f"visual.{name}"] = (torch.randn(shape, generator=generator) * 0.01).to(dtype)
    state["logit_scale"] = torch.tensor(4.6).to(dtype)
    return state


def write_clip_safetensors(path: str | os.PathLike, seed: int = 0) -> dict[str, torch.Tensor]:
    from safetensors.torch import save_file

    state = clip_visual_state_dict(seed)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return state


class _ScriptableCLIP(nn.Module):
    """A module whose state dict has OpenAI CLIP's ``visual.*`` layout, for a TorchScript archive."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        self.visual = nn.Module()
        for name, tensor in state.items():
            if not name.startswith("visual."):
                continue
            *parents, leaf = name[len("visual.") :].split(".")
            module = self.visual
            for part in parents:
                if not hasattr(module, part):
                    module.add_module(part, nn.Module())
                module = getattr(module, part)
            module.register_buffer(leaf, tensor.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def write_clip_torchscript(path: str | os.PathLike, seed: int = 0) -> dict[str, torch.Tensor]:
    """Write a TorchScript archive whose ``state_dict()`` matches OpenAI's ``RN50.pt`` key layout."""
    state = clip_visual_state_dict(seed)
    torch.jit.script(_ScriptableCLIP(state)).save(str(path))
    return state
