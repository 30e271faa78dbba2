"""Exact shortcuts the models take, and the switch that turns them off for comparison.

Each shortcut leaves every output unchanged (up to floating-point summation order):

* text at the batch's length: positions that the attention mask hides in every row are cut before a
  text encoder that honours the mask (:mod:`vlsm.text.batching`; each model says where that is exact);
* a frozen, deterministic text encoder computes each distinct prompt once (:class:`TextEmbeddingCache`);
* a ViT stops after the last block its decoder reads (the unused blocks keep their parameters).

``with exact_speedups(False): ...`` runs the full computation (benchmarks compare the two). Tracing,
ONNX export and ``torch.compile`` always get the full computation: the shortcuts depend on the values
of the token ids, which a traced graph would freeze.
"""
from __future__ import annotations

import contextvars
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import nn

_ENABLED = contextvars.ContextVar("vlsm_exact_speedups", default=True)
# attributes under which transformers/timm/open_clip modules keep a dropout probability as a float
_DROPOUT_ATTRIBUTES = ("dropout", "attention_dropout", "dropout_prob", "attn_drop", "drop_prob")


@contextmanager
def exact_speedups(enabled: bool = True) -> Iterator[None]:
    """Turn the exact shortcuts on or off inside the block (on by default everywhere)."""
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _tracing() -> bool:
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return True
    compiler = getattr(torch, "compiler", None)
    if compiler is None:
        return False
    return bool(compiler.is_compiling() or getattr(compiler, "is_exporting", lambda: False)())


def speedups_enabled() -> bool:
    """Whether the exact shortcuts apply here (not inside ``exact_speedups(False)``, tracing or compiling)."""
    return _ENABLED.get() and not _tracing()


def is_frozen(modules: Sequence[nn.Module]) -> bool:
    """No parameter of ``modules`` requires a gradient."""
    return not any(p.requires_grad for m in modules for p in m.parameters())


def is_deterministic(modules: Sequence[nn.Module]) -> bool:
    """Whether ``modules`` compute the same output every call: in eval mode, or in train mode with every
    dropout probability 0 (a frozen encoder still runs its dropout when the model is in train mode)."""
    for module in modules:
        for m in module.modules():
            if not m.training:
                continue
            if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
                return False
            for name in _DROPOUT_ATTRIBUTES:
                value = getattr(m, name, None)
                if isinstance(value, float) and value > 0:
                    return False
    return True


class TextEmbeddingCache:
    """Per-prompt outputs of a frozen, deterministic text encoder (LRU, ``max_entries`` prompts).

    A prompt is keyed by its token ids and attention mask up to its own needed length, and by the
    autocast state; the whole cache is dropped when the encoder's weights change (in place, by loading,
    or by moving to another device or dtype) or it switches between train and eval mode.
    """

    def __init__(self, max_entries: int = 4096):
        self.max_entries = int(max_entries)
        self._entries: OrderedDict = OrderedDict()
        self._fingerprint = None
        self._usable: Optional[bool] = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._fingerprint, self._usable = None, None

    def __getstate__(self):  # copies and pickles start empty
        return {"max_entries": self.max_entries}

    def __setstate__(self, state):
        self.__init__(state["max_entries"])

    def _refresh(self, modules: Sequence[nn.Module]) -> None:
        fingerprint = tuple((t.data_ptr(), t._version, t.dtype, t.requires_grad)
                            for m in modules for t in (*m.parameters(), *m.buffers()))
        fingerprint += tuple(m.training for module in modules for m in module.modules())
        if fingerprint != self._fingerprint:
            self._entries.clear()
            self._fingerprint = fingerprint
            self._usable = is_frozen(modules) and is_deterministic(modules)

    def usable(self, modules: Sequence[nn.Module]) -> bool:
        """Whether the encoder made of ``modules`` may be cached now (frozen and deterministic)."""
        with self._lock:
            self._refresh(modules)
            return bool(self._usable)

    def encode(self, modules: Sequence[nn.Module], encode: Callable, input_ids: torch.Tensor,
               attention_mask: Optional[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        """``encode(ids, mask)`` for the rows not cached yet (cut to their needed ``lengths``), the
        cached rows for the others; one output row per input row."""
        from vlsm.text.batching import trim_to_lengths

        device = input_ids.device.type
        autocast = (torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device), device)
        ids_cpu, lengths_cpu = input_ids.cpu(), lengths.cpu().tolist()
        mask_cpu = None if attention_mask is None else attention_mask.cpu()
        keys = []
        for i, n in enumerate(lengths_cpu):
            mask_key = None if mask_cpu is None else mask_cpu[i, :n].numpy().tobytes()
            keys.append((autocast, ids_cpu[i, :n].numpy().tobytes(), mask_key))
        with self._lock:
            self._refresh(modules)
            missing = list(dict.fromkeys(k for k in keys if k not in self._entries))
        if missing:
            first = {k: keys.index(k) for k in missing}
            rows = torch.tensor([first[k] for k in missing], device=input_ids.device)
            sub_mask = None if attention_mask is None else attention_mask[rows]
            ids, mask = trim_to_lengths(input_ids[rows], sub_mask, lengths[rows])
            out = encode(ids, mask)
            with self._lock:
                for j, k in enumerate(missing):
                    self._entries[k] = out[j].detach().clone()
            self.misses += len(missing)
        with self._lock:
            rows_out = []
            for k in keys:
                self._entries.move_to_end(k)
                rows_out.append(self._entries[k])
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        self.hits += len(keys) - len(missing)
        return torch.stack(rows_out)
