"""Choosing the text prompt of a case.

A prompt *choice* is one of

* ``"p0"`` .. ``"p9"`` (any ``p<digits>``): that key of the case's prompts. medvlsm stores some keys
  (``p7``-``p9``, and most keys of BUSI/CAMUS) as lists of variants: one is drawn with ``rng``.
* ``"random"``: a key drawn uniformly from the case's ``p<digits>`` keys *except* ``p0`` (the empty
  prompt), as medvlsm's ``random`` prompt type does, then a variant within a list.
* anything else: a fixed prompt used verbatim for every case (e.g. ``"polyp"``).

``rng`` is a ``numpy.random.Generator``; :class:`~vlsm.data.dataset.SegmentationDataset` seeds one
per (seed, epoch, index), so the prompts drawn are the same on every run and with any number of
DataLoader workers. ``rng=None`` takes the first variant of a list (deterministic) and is refused
for ``"random"``.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np

_KEY = re.compile(r"p[0-9]+")  # whole-string match only (a trailing newline is no key)
RANDOM = "random"
#: medvlsm's prompt types, in order: p0 (empty), p1 (class name), p2-p6 (shape, colour, size, number,
#: location added one by one), p7-p9 (lists of descriptive variants). Any ``p<digits>`` key is read.
PROMPT_KEYS = tuple(f"p{i}" for i in range(10))


class PromptError(ValueError, KeyError):
    """A prompt that a record does not have (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def is_prompt_key(choice) -> bool:
    """Whether ``choice`` names a prompt key (``p0``, ``p9``, ``p10``, ...) rather than a prompt text."""
    return isinstance(choice, str) and _KEY.fullmatch(choice) is not None


def prompt_keys(prompts: dict) -> list[str]:
    """The ``p<digits>`` keys of a prompt dict, in numeric order."""
    return sorted((k for k in prompts if is_prompt_key(k)), key=lambda k: int(k[1:]))


def _pick(value, rng: Optional[np.random.Generator], key: str, name: Optional[str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(v, str) for v in value):
            raise ValueError(f"prompt {key!r} of {name or 'a record'} must be a text or a non-empty list of "
                             f"texts, got {value!r}: fix the annotation file")
        if rng is None:
            return value[0]
        return value[int(rng.integers(len(value)))]
    raise ValueError(f"prompt {key!r} of {name or 'a record'} must be a text or a list of texts, got "
                     f"{type(value).__name__}: fix the annotation file")


def select_prompt(prompts: dict, choice: str, rng: Optional[np.random.Generator] = None, *,
                  name: Optional[str] = None) -> str:
    """The prompt text for ``choice`` (see the module docstring). ``name`` is used in errors."""
    if not isinstance(choice, str):
        raise TypeError(f"prompt choice must be a string, got {type(choice).__name__}")
    who = f"record {name!r}" if name else "the record"
    if choice == RANDOM:
        if rng is None:
            raise ValueError("prompt 'random' needs a random generator (rng)")
        keys = [k for k in prompt_keys(prompts) if k != "p0"]
        if not keys:
            raise PromptError(f"{who} has no prompts p1..p9 to draw a random prompt from "
                           f"(its keys: {sorted(prompts) or 'none'}); pass a fixed prompt text instead")
        key = keys[int(rng.integers(len(keys)))]
        return _pick(prompts[key], rng, key, name)
    if is_prompt_key(choice):
        if choice not in prompts:
            available = ", ".join(prompt_keys(prompts)) or "none"
            raise PromptError(f"{who} has no prompt {choice!r}; available: {available}. Choose one of those, "
                           f"'random', or a fixed prompt text")
        return _pick(prompts[choice], rng, choice, name)
    return choice


__all__ = ["select_prompt", "PromptError", "prompt_keys", "is_prompt_key", "RANDOM", "PROMPT_KEYS"]
