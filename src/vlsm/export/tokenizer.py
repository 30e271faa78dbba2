"""A model's tokenizer as a Hugging Face ``tokenizers`` ``tokenizer.json``, for use without torch.

The exported ``tokenizer.json`` reproduces :mod:`vlsm.text.tokenizers` exactly (start/end or
[CLS]/[SEP] tokens, truncation and padding to the context length, attention mask), so a deployment
needs only ``pip install tokenizers``::

    tok = tokenizers.Tokenizer.from_file("tokenizer.json")
    enc = tok.encode_batch(["polyp"])          # .ids and .attention_mask, each context_length long

(Ensemble-C has two tokenizers, written as ``tokenizer.json`` and ``tokenizer-2.json``: its
``input_ids`` and ``attention_mask`` are the two encodings side by side.)

CLIP BPE: open_clip's vocabulary and merges, its pre-tokenizer regex, byte-level mapping and ``</w>``
word ends. One difference is documented rather than emulated: open_clip first repairs mojibake and
HTML entities (``ftfy``, ``html.unescape``); ``tokenizer.json`` tokenizes such text as written.
"""
from __future__ import annotations

from vlsm.text.tokenizers import ClipBPETokenizer, WordPieceTokenizer

HF_TOKENIZER_FILE = "tokenizer.json"
# open_clip's SimpleTokenizer word pattern (after lower-casing, so case-insensitivity is moot)
CLIP_WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def hf_tokenizers(tok) -> list:
    """One ``tokenizers.Tokenizer`` per part of a model's tokenizer, in input order.

    Most models have one tokenizer; Ensemble-C's concatenates two (``first`` then ``second``, their
    ids side by side in ``input_ids``), so its export carries two files whose ids are concatenated.
    """
    parts = [tok.first, tok.second] if hasattr(tok, "first") and hasattr(tok, "second") else [tok]
    if len(parts) > 1:
        return [hf for part in parts for hf in hf_tokenizers(part)]
    return [hf_tokenizer(tok)]


def tokenizer_file_names(count: int) -> list[str]:
    """``tokenizer.json``, then ``tokenizer-2.json`` ... for models with several tokenizers."""
    return [HF_TOKENIZER_FILE] + [f"tokenizer-{i}.json" for i in range(2, count + 1)]


def hf_tokenizer(tok):
    """The ``tokenizers.Tokenizer`` equivalent of a vlsm tokenizer (CLIP BPE or WordPiece)."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

    if isinstance(tok, ClipBPETokenizer):
        bpe = tok.bpe
        merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
        hf = Tokenizer(models.BPE(vocab=dict(bpe.encoder), merges=list(merges), continuing_subword_prefix="",
                                  end_of_word_suffix="</w>", fuse_unk=False))
        hf.normalizer = normalizers.Sequence([
            normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip(), normalizers.Lowercase()])
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(CLIP_WORD_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        start, end = bpe.decoder[tok.sot_id], bpe.decoder[tok.eot_id]
        specials = [(start, tok.sot_id), (end, tok.eot_id)]
        # open_clip matches its special tokens inside the (cleaned, lower-cased) text as single tokens
        hf.add_special_tokens([AddedToken(t, normalized=True, special=True) for t, _ in specials])
        pad_token = bpe.decoder[tok.pad_id]
    elif isinstance(tok, WordPieceTokenizer):
        hf = Tokenizer.from_str(tok.backend.to_str())  # a copy: the model's own backend stays as it is
        start, end = "[CLS]", "[SEP]"
        specials = [(start, tok.vocab.index(start)), (end, tok.vocab.index(end))]
        pad_token = "[PAD]"
    else:
        raise TypeError(f"no tokenizer.json equivalent for {type(tok).__name__}")
    hf.post_processor = processors.TemplateProcessing(single=f"{start} $A {end}", special_tokens=specials)
    # truncation counts the two special tokens, as vlsm keeps context_length - 2 body tokens
    hf.enable_truncation(max_length=tok.context_length)
    hf.enable_padding(length=tok.context_length, pad_id=tok.pad_id, pad_token=pad_token)
    return hf


__all__ = ["hf_tokenizer", "hf_tokenizers", "tokenizer_file_names", "HF_TOKENIZER_FILE"]
