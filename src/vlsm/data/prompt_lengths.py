"""Prompts longer than a text encoder's context, which its tokenizer would cut silently.

CLIP's byte-pair encoding (CLIPSeg, CRIS) takes 77 tokens, BiomedCLIP's BERT WordPiece 256, both
counting their start and end tokens. :func:`prompt_lengths` counts the prompts of some records with
any tokenizer (or token counter) and reports how many are too long and the longest;
:func:`context_length_notes` is what ``vlsm data check`` prints for a dataset folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Union

from vlsm.data.prompts import RANDOM, is_prompt_key, prompt_keys
from vlsm.data.records import Record

CLIP_CONTEXT = 77
BERT_CONTEXT = 256
ALL = "all"


@dataclass
class PromptLengths:
    """What :func:`prompt_lengths` found: ``over`` of ``checked`` prompt texts have more than ``limit``
    tokens; the longest has ``longest`` tokens (case ``longest_name``, key ``longest_key``)."""

    limit: int
    checked: int = 0
    over: int = 0
    longest: int = 0
    longest_name: str = ""
    longest_key: str = ""
    over_names: list = field(default_factory=list)

    def describe(self, label: str = "tokens") -> str:
        """One line for a log or report."""
        if not self.checked:
            return f"no prompts to count against the {label} context ({self.limit})"
        head = (f"{self.over} of {self.checked} prompt(s) are longer than the {label} context of {self.limit} "
                f"tokens and are cut" if self.over else
                f"all {self.checked} prompt(s) fit the {label} context of {self.limit} tokens")
        return f"{head}; longest {self.longest} tokens ({self.longest_name}, {self.longest_key})"


def prompt_texts(record: Record, key: str) -> list[tuple[str, str]]:
    """``[(key, text)]`` a record can give for the prompt choice ``key``: a ``p<digits>`` key (every
    variant of a list), ``"random"`` (every key but p0), ``"all"`` (every key) or a fixed text."""
    if key in (RANDOM, ALL):
        keys = [k for k in prompt_keys(record.prompts) if key == ALL or k != "p0"]
    elif is_prompt_key(key):
        keys = [key] if key in record.prompts else []
    else:
        return [("text", key)]
    out = []
    for k in keys:
        value = record.prompts[k]
        for text in ([value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []):
            if isinstance(text, str):
                out.append((k, text))
    return out


def token_counter(tokenizer) -> Callable[[str], int]:
    """Tokens a tokenizer of :mod:`vlsm.text` gives a text, start and end tokens included."""
    return lambda text: len(tokenizer.encode(text)) + 2


def prompt_lengths(records: Iterable[Record], key: str, tokenizer: Union[Callable[[str], int], object],
                   limit: Optional[int] = None) -> PromptLengths:
    """Count the prompts of ``records`` for the choice ``key`` (see :func:`prompt_texts`).

    ``tokenizer`` is a :mod:`vlsm.text` tokenizer (its ``encode`` plus start and end tokens; ``limit``
    defaults to its ``context_length``) or a function text -> number of tokens (then ``limit`` is needed).
    """
    if hasattr(tokenizer, "encode"):
        count = token_counter(tokenizer)
        limit = limit if limit is not None else int(tokenizer.context_length)
    elif callable(tokenizer):
        count = tokenizer
    else:
        raise TypeError(f"tokenizer must have an encode() method or be a function, got {type(tokenizer).__name__}")
    if limit is None:
        raise ValueError("limit (the context length) is needed with a token-counting function")
    result = PromptLengths(limit=int(limit))
    seen: dict[str, int] = {}
    for rec in records:
        for k, text in prompt_texts(rec, key):
            n = seen.get(text)
            if n is None:
                n = seen[text] = int(count(text))
            result.checked += 1
            if n > result.limit:
                result.over += 1
                if rec.name not in result.over_names:
                    result.over_names.append(rec.name)
            if n > result.longest:
                result.longest, result.longest_name, result.longest_key = n, rec.name, k
    return result


def context_length_notes(path, splits: Optional[Iterable[str]] = None) -> list[str]:
    """Lines for ``vlsm data check``: the dataset's prompts (every key and variant) counted against the
    CLIP (77, with CLIP's real tokenizer) and BERT (256) context lengths."""
    from vlsm.data.listing import list_dataset

    per_split = list_dataset(path).splits
    records = [r for s, recs in per_split.items() if not splits or s in splits for r in recs]
    if not any(prompt_texts(r, ALL) for r in records):
        return []
    notes = []
    try:
        from vlsm.text.tokenizers import ClipBPETokenizer

        clip = prompt_lengths(records, ALL, ClipBPETokenizer(context_length=CLIP_CONTEXT))
        notes.append("prompts, CLIP BPE: " + clip.describe("CLIP"))
    except ImportError as err:  # open_clip missing
        notes.append(f"prompts, CLIP BPE: not counted ({err})")
    # WordPiece needs BiomedCLIP's vocabulary, which is not part of the toolkit. A WordPiece token covers
    # at least one character, so a prompt of at most 254 characters can never exceed 256 tokens.
    chars = prompt_lengths(records, ALL, len, limit=BERT_CONTEXT - 2)
    if chars.over:
        notes.append(f"prompts, BERT WordPiece: not counted (needs BiomedCLIP's vocabulary); {chars.over} prompt(s) "
                     f"have more than {BERT_CONTEXT - 2} characters and may exceed {BERT_CONTEXT} tokens (longest "
                     f"{chars.longest} characters: {chars.longest_name}, {chars.longest_key})")
    else:
        notes.append(f"prompts, BERT WordPiece: all fit the context of {BERT_CONTEXT} tokens (none has more than "
                     f"{BERT_CONTEXT - 2} characters; longest {chars.longest}: {chars.longest_name})")
    return notes


__all__ = ["PromptLengths", "prompt_lengths", "prompt_texts", "token_counter", "context_length_notes",
           "CLIP_CONTEXT", "BERT_CONTEXT"]
