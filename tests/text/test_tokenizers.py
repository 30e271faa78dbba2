"""Tokenizers: fixed lengths, attention masks, truncation, pickling, save/load, parity with references."""
from __future__ import annotations

import pickle

import pytest
import torch

from vlsm.text.tokenizers import (
    TOKENIZER_FILE,
    ClipBPETokenizer,
    NullTokenizer,
    TokenizerNotAvailableError,
    WordPieceTokenizer,
    load_tokenizer,
)

SMALL_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "polyp", "in", "the", "colon", "small", "round",
               "pink", "##s", "lesion", ".", ",", "ul", "##cer"]


def _write_vocab(folder, vocab=SMALL_VOCAB):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder / "vocab.txt"


def test_null_tokenizer_shape():
    out = NullTokenizer()(["a", "b"])
    assert out["input_ids"].shape == (2, 1) and out["attention_mask"].shape == (2, 1)


def test_clip_bpe_layout_and_mask():
    tok = ClipBPETokenizer(context_length=77)
    out = tok(["a polyp", "a small round pink polyp in the colon"])
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == (2, 77) and mask.shape == (2, 77)
    assert ids.dtype == torch.long and mask.dtype == torch.long
    n = int(mask[0].sum())
    assert ids[0, 0] == tok.sot_id and ids[0, n - 1] == tok.eot_id
    assert (ids[0, n:] == tok.pad_id).all() and (mask[0, n:] == 0).all() and (mask[0, :n] == 1).all()
    assert int(mask[1].sum()) > n
    # same token ids as open_clip's CLIP tokenizer (which pads with 0)
    from open_clip.tokenizer import SimpleTokenizer

    ref = SimpleTokenizer()(["a polyp"], context_length=77)[0]
    assert torch.equal(ids[0, :n], ref[:n])


def test_clip_bpe_truncation_keeps_end_token():
    tok = ClipBPETokenizer(context_length=8)
    out = tok(["a very long prompt about a polyp in the colon with many words"])
    assert out["input_ids"].shape == (1, 8)
    assert out["attention_mask"].sum() == 8
    assert out["input_ids"][0, -1] == tok.eot_id and out["input_ids"][0, 0] == tok.sot_id


def test_clip_bpe_single_string_and_bad_input():
    tok = ClipBPETokenizer(context_length=10)
    assert tok("a polyp")["input_ids"].shape == (1, 10)
    with pytest.raises(TypeError):
        tok([1, 2])
    with pytest.raises(ValueError):
        ClipBPETokenizer(context_length=1)


def test_wordpiece_matches_bert_tokenizer_fast(tmp_path):
    from transformers import BertTokenizerFast

    vocab = _write_vocab(tmp_path / "w")
    tok = WordPieceTokenizer.from_file(vocab, context_length=12)
    ref = BertTokenizerFast.from_pretrained(str(vocab.parent), do_lower_case=True, local_files_only=True)
    texts = ["A small round Polyps in the colon.", "ulcer, lesion", "unknownword polyp"]
    out = tok(texts)
    want = ref(texts, max_length=12, truncation=True, padding="max_length", return_tensors="pt")
    assert torch.equal(out["input_ids"], want["input_ids"])
    assert torch.equal(out["attention_mask"], want["attention_mask"])


def test_wordpiece_truncation_and_padding(tmp_path):
    tok = WordPieceTokenizer.from_file(_write_vocab(tmp_path / "w"), context_length=5)
    out = tok(["a small round pink polyp", "a"])
    assert out["input_ids"].shape == (2, 5)
    assert out["input_ids"][0].tolist() == [2, 5, 10, 11, 3]  # [CLS] a small round [SEP]
    assert out["attention_mask"][1].tolist() == [1, 1, 1, 0, 0]
    assert out["input_ids"][1, 3:].tolist() == [0, 0]


def test_wordpiece_requires_special_tokens():
    with pytest.raises(ValueError, match="special tokens"):
        WordPieceTokenizer(["a", "b"])


def test_tokenizers_pickle_and_save_roundtrip(tmp_path):
    wp = WordPieceTokenizer.from_file(_write_vocab(tmp_path / "w"), context_length=9)
    bpe = ClipBPETokenizer(context_length=20)
    for tok, sub in ((wp, "wp"), (bpe, "bpe")):
        texts = ["a polyp in the colon"]
        before = tok(texts)
        clone = pickle.loads(pickle.dumps(tok))
        assert torch.equal(clone(texts)["input_ids"], before["input_ids"])
        tok.save(tmp_path / sub)
        assert (tmp_path / sub / TOKENIZER_FILE).is_file()
        again = load_tokenizer(tmp_path / sub)
        assert type(again) is type(tok) and again.context_length == tok.context_length
        assert torch.equal(again(texts)["input_ids"], before["input_ids"])


def test_wordpiece_from_tokenizer_json(tmp_path):
    from transformers import BertTokenizerFast

    vocab = _write_vocab(tmp_path / "w")
    ref = BertTokenizerFast.from_pretrained(str(vocab.parent), do_lower_case=True, local_files_only=True)
    ref.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "vocab.txt").unlink(missing_ok=True)
    tok = load_tokenizer(tmp_path / "hf", kind="wordpiece", context_length=8)
    assert tok.vocab == SMALL_VOCAB


def test_load_tokenizer_missing_vocab(tmp_path):
    with pytest.raises(TokenizerNotAvailableError, match="vocab.txt"):
        load_tokenizer(tmp_path, kind="wordpiece")
    with pytest.raises(TokenizerNotAvailableError):
        load_tokenizer(tmp_path)


def test_character_level_vocab_covers_ascii():
    tok = WordPieceTokenizer.character_level(context_length=32)
    out = tok(["Polyp #3, 5mm."])
    assert (out["input_ids"] != tok.vocab.index("[UNK]")).all()
    assert tok.vocab_size <= 128
