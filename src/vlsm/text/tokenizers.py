"""Tokenizers: turn prompts into fixed-length ``input_ids`` + ``attention_mask`` for one model.

Every tokenizer is a picklable callable ``tok(texts) -> {"input_ids": (B, L), "attention_mask": (B, L)}``
(LongTensors), with ``context_length`` L. Image-only models use :class:`NullTokenizer`.

* :class:`ClipBPETokenizer` (CLIPSeg): CLIP's byte-pair encoding. The vocabulary ships with open_clip
  (``bpe_simple_vocab_16e6.txt.gz``), so it works offline. Output matches transformers'
  ``CLIPTokenizer(padding="max_length", truncation=True)`` of the CLIPSeg checkpoints:
  ``<|startoftext|> tokens <|endoftext|>`` then padding with ``<|endoftext|>`` (id 49407); the
  attention mask is 1 up to and including the end token.
* :class:`WordPieceTokenizer` (BiomedCLIPSeg): BERT WordPiece (uncased), as BiomedBERT's
  ``BertTokenizerFast``: ``[CLS] tokens [SEP] [PAD]...``. Its vocabulary comes from the weights folder
  (``vocab.txt`` or ``tokenizer.json``).

``tok.save(dir)`` writes ``vlsm_tokenizer.json`` (+ the vocabulary when it is not part of an installed
package); :func:`load_tokenizer` rebuilds the tokenizer from such a folder.
"""
from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Optional, Sequence

import torch

from vlsm.utils import write_text_atomic

TOKENIZER_FILE = "vlsm_tokenizer.json"
VOCAB_FILE = "vocab.txt"


class TokenizerNotAvailableError(FileNotFoundError):
    """A model's tokenizer needs files (a vocabulary) that are not on this machine."""


def _as_list(texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"prompts must be strings, got {type(bad[0]).__name__}")
    return texts


def _pack(rows: list[list[int]], context_length: int, pad_id: int) -> dict:
    ids = torch.full((len(rows), context_length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), context_length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


class NullTokenizer:
    """For image-only models: one dummy token per prompt, so batches keep one shape."""

    context_length = 1

    def __call__(self, texts: Sequence[str]) -> dict:
        n = len(texts)
        return {"input_ids": torch.zeros(n, 1, dtype=torch.long),
                "attention_mask": torch.zeros(n, 1, dtype=torch.long)}


class ClipBPETokenizer:
    """CLIP byte-pair encoding with start/end tokens, padding and truncation to ``context_length``.

    Args:
        context_length: L, number of token positions (77 for CLIPSeg).
        pad_id: id used for padding (``<|endoftext|>`` = 49407 like transformers' CLIPTokenizer;
            open_clip pads with 0 — the CLIPSeg text model never looks past the end token either way).
    """

    kind = "clip-bpe"

    def __init__(self, context_length: int = 77, pad_id: Optional[int] = None):
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2 (start and end tokens), got {context_length}")
        self.context_length = int(context_length)
        self._bpe = None
        self.pad_id = self.eot_id if pad_id is None else int(pad_id)

    # open_clip's SimpleTokenizer holds large dicts; build it lazily and never pickle it
    @property
    def bpe(self):
        if self._bpe is None:
            from open_clip.tokenizer import SimpleTokenizer

            self._bpe = SimpleTokenizer()
        return self._bpe

    @property
    def sot_id(self) -> int:
        return self.bpe.sot_token_id

    @property
    def eot_id(self) -> int:
        return self.bpe.eot_token_id

    @property
    def vocab_size(self) -> int:
        return self.bpe.vocab_size

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_bpe"] = None
        return state

    def encode(self, text: str) -> list[int]:
        """Token ids of one prompt without start/end tokens."""
        return self.bpe.encode(text)

    def __call__(self, texts: Sequence[str]) -> dict:
        rows = []
        for text in _as_list(texts):
            body = self.encode(text)[: self.context_length - 2]
            rows.append([self.sot_id] + body + [self.eot_id])
        return _pack(rows, self.context_length, self.pad_id)

    def save(self, directory: str | Path) -> None:
        _write_spec(directory, {"kind": self.kind, "context_length": self.context_length, "pad_id": self.pad_id})

    def __repr__(self) -> str:
        return f"ClipBPETokenizer(context_length={self.context_length})"


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class WordPieceTokenizer:
    """BERT WordPiece tokenizer (uncased by default), ``[CLS] ... [SEP]`` padded with ``[PAD]``.

    Args:
        vocab: the vocabulary, one token per entry, in id order (``vocab.txt`` lines).
        context_length: L (256 for BiomedCLIP).
        lowercase: lower-case and strip accents first (BiomedBERT is uncased).
    """

    kind = "wordpiece"

    def __init__(self, vocab: Sequence[str], context_length: int = 256, lowercase: bool = True):
        vocab = list(vocab)
        missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in vocab]
        if missing:
            raise ValueError(f"WordPiece vocabulary lacks the special tokens {missing}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("WordPiece vocabulary has duplicate tokens")
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2 ([CLS] and [SEP]), got {context_length}")
        self.vocab = vocab
        self.context_length = int(context_length)
        self.lowercase = bool(lowercase)
        self._backend = None

    @classmethod
    def from_file(cls, path: str | Path, context_length: int = 256, lowercase: bool = True) -> "WordPieceTokenizer":
        """Read ``vocab.txt`` (one token a line) or a WordPiece ``tokenizer.json``."""
        path = Path(path)
        if not path.is_file():
            raise TokenizerNotAvailableError(f"WordPiece vocabulary {path} not found")
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            model = data.get("model", {})
            if model.get("type") != "WordPiece" or "vocab" not in model:
                raise ValueError(f"{path} is not a WordPiece tokenizer.json (model.type is {model.get('type')!r}); "
                                 f"give the vocab.txt of the BERT tokenizer instead")
            vocab = [tok for tok, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
        else:
            vocab = path.read_text(encoding="utf-8").splitlines()
            while vocab and vocab[-1] == "":
                vocab.pop()
        return cls(vocab, context_length=context_length, lowercase=lowercase)

    @classmethod
    def character_level(cls, context_length: int = 16) -> "WordPieceTokenizer":
        """A ~110-token vocabulary of ASCII characters (+ ``##`` continuations) for tiny models."""
        chars = list(string.ascii_lowercase + string.digits)
        vocab = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars] + list(string.punctuation)
        return cls(vocab, context_length=context_length, lowercase=True)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return self.vocab.index("[PAD]")

    @property
    def backend(self):
        if self._backend is None:
            from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

            index = {tok: i for i, tok in enumerate(self.vocab)}
            tok = Tokenizer(models.WordPiece(index, unk_token="[UNK]", max_input_chars_per_word=100))
            tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                        strip_accents=None, lowercase=self.lowercase)
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            self._backend = tok
        return self._backend

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_backend"] = None
        return state

    def encode(self, text: str) -> list[int]:
        """Token ids of one prompt without [CLS]/[SEP]."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def __call__(self, texts: Sequence[str]) -> dict:
        cls_id, sep_id = self.vocab.index("[CLS]"), self.vocab.index("[SEP]")
        rows = []
        for text in _as_list(texts):
            body = self.encode(text)[: self.context_length - 2]
            rows.append([cls_id] + body + [sep_id])
        return _pack(rows, self.context_length, self.pad_id)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(directory / VOCAB_FILE, "\n".join(self.vocab) + "\n")
        _write_spec(directory, {"kind": self.kind, "context_length": self.context_length,
                                "lowercase": self.lowercase, "vocab": VOCAB_FILE})

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, context_length={self.context_length})"


def _write_spec(directory: str | Path, spec: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(directory / TOKENIZER_FILE, json.dumps(spec, indent=2))


def find_wordpiece_vocab(directory: str | Path) -> Optional[Path]:
    """``vocab.txt`` or ``tokenizer.json`` in ``directory``, if any."""
    directory = Path(directory)
    for name in (VOCAB_FILE, "tokenizer.json"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_tokenizer(directory: str | Path, *, kind: Optional[str] = None,
                   context_length: Optional[int] = None):
    """Rebuild a tokenizer from a folder written by ``tok.save(dir)`` (or a weights folder).

    ``vlsm_tokenizer.json`` decides the kind and length; without it, ``kind`` must be given and the
    folder must hold the vocabulary (``vocab.txt``/``tokenizer.json`` for WordPiece). ``context_length``
    overrides the saved length.
    Raises:
        TokenizerNotAvailableError: the folder lacks the files.
    """
    directory = Path(directory)
    spec_path = directory / TOKENIZER_FILE
    spec = json.loads(spec_path.read_text()) if spec_path.is_file() else {}
    kind = spec.get("kind", kind)
    if kind is None:
        raise TokenizerNotAvailableError(f"{directory} holds no {TOKENIZER_FILE}; cannot tell which tokenizer to build")
    length = context_length or spec.get("context_length")
    if kind == "clip-bpe":
        return ClipBPETokenizer(context_length=length or 77, pad_id=spec.get("pad_id"))
    if kind == "wordpiece":
        vocab = directory / spec["vocab"] if "vocab" in spec else find_wordpiece_vocab(directory)
        if vocab is None or not vocab.is_file():
            raise TokenizerNotAvailableError(
                f"no WordPiece vocabulary in {directory}: looked for {VOCAB_FILE} and tokenizer.json")
        return WordPieceTokenizer.from_file(vocab, context_length=length or 256,
                                            lowercase=spec.get("lowercase", True))
    raise ValueError(f"unknown tokenizer kind {kind!r} in {spec_path}; expected 'clip-bpe' or 'wordpiece'")
