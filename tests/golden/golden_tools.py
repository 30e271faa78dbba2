"""Helpers for golden-output tests: deterministic weights/inputs and stored output summaries.

Weights come from a seeded ``torch.Generator`` (not from module init), so the golden values depend
only on the model's maths and parameter names, not on how PyTorch initialises layers.
Regenerate after an intended change with ``VLSM_UPDATE_GOLDEN=1 pytest tests/...``: each golden test
then rewrites its file and is skipped with a message naming it (never a silent pass); review the
diff and rerun without the variable.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

GOLDEN_DIR = Path(__file__).resolve().parent


def seeded_state_dict(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> dict:
    """A deterministic state dict for ``model``: N(0, scale) weights, BN stats in a safe range."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in sorted(model.state_dict().items()):
        if not t.is_floating_point() or t.ndim == 0:  # integer buffers, scalars such as logit_scale
            state[name] = t.clone()
            continue
        r = torch.randn(t.shape, generator=gen, dtype=torch.float64)
        if name.endswith("running_var"):
            v = 0.5 + r.abs()
        elif name.endswith("running_mean"):
            v = 0.1 * r
        elif name.endswith(("norm.weight", "bn.weight", "layer_norm1.weight", "layer_norm2.weight")) or \
                (name.endswith(".weight") and t.ndim == 1):
            v = 1.0 + 0.1 * r  # norm scales near 1
        elif t.ndim == 1:
            v = 0.05 * r
        else:
            fan_in = max(1, t[0].numel())
            v = r * (scale if fan_in <= 1 else (1.0 / fan_in) ** 0.5)
        state[name] = v.to(t.dtype)
    return state


def seeded_input(shape, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).float()


def summarize(t: torch.Tensor) -> dict:
    t = t.detach().double().cpu()
    flat = t.flatten()
    idx = torch.linspace(0, flat.numel() - 1, 16).long()
    return {"shape": list(t.shape), "mean": flat.mean().item(), "std": flat.std().item(),
            "abs_sum": flat.abs().sum().item(), "min": flat.min().item(), "max": flat.max().item(),
            "sample_index": idx.tolist(), "sample_values": flat[idx].tolist()}


def _load_or_update(name: str, got) -> object:
    """The stored golden value of ``name``; under VLSM_UPDATE_GOLDEN=1 the file is rewritten from ``got``
    and the test is skipped, saying so, so an update can never pass as a check."""
    path = GOLDEN_DIR / f"{name}.json"
    if os.environ.get("VLSM_UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(got, indent=1) + "\n")
        pytest.skip(f"VLSM_UPDATE_GOLDEN=1: rewrote {path}; review the diff, then rerun without it to check")
    assert path.is_file(), f"golden file {path} missing; create it with VLSM_UPDATE_GOLDEN=1"
    return json.loads(path.read_text())


def check_golden_data(name: str, got) -> None:
    """Compare JSON-able data (names, shapes, ...) exactly with ``tests/golden/<name>.json``."""
    want = _load_or_update(name, got)
    assert json.loads(json.dumps(got)) == want, f"{name}: differs from golden {GOLDEN_DIR / (name + '.json')}"


def check_golden(name: str, t: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Compare a summary of ``t`` with ``tests/golden/<name>.json`` (rewritten when VLSM_UPDATE_GOLDEN=1)."""
    got = summarize(t)
    want = _load_or_update(name, got)
    assert got["shape"] == want["shape"], f"{name}: shape {got['shape']} != golden {want['shape']}"
    for key in ("mean", "std", "abs_sum", "min", "max"):
        assert abs(got[key] - want[key]) <= atol + rtol * abs(want[key]), \
            f"{name}: {key} {got[key]!r} != golden {want[key]!r}"
    for i, (g, w) in enumerate(zip(got["sample_values"], want["sample_values"])):
        assert abs(g - w) <= atol + rtol * abs(w), f"{name}: sample {i} {g!r} != golden {w!r}"
