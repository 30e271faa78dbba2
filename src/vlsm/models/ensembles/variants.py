"""What the two variants of the paper ensembles mean: the reference code's defects and what ``fixed`` changes.

``variant="reference"`` reproduces the reference code's computation, defects included, so that its
numbers and checkpoints reproduce; ``variant="fixed"`` is the architecture the paper describes.
These tables are the record of the difference (README's "Two variants" table says the same).
"""
from __future__ import annotations

VARIANTS = ("fixed", "reference")

REFERENCE_DEFECTS = {
    "biomedclipseg-a": [
        "no defect in the output: only wasted work (the adapter's upsampling head runs twice, an interpolated "
        "copy and a 112 px resize are computed and never used, the ViT's last block, final norm and projection "
        "head run for nothing). Dropped here; outputs are unchanged.",
        "unused modules built by the reference: dense_layer, trans_conv, upsample_proj (dropped on conversion).",
        "the frozen ViT runs under torch.inference_mode, which breaks back-propagation into the layers it feeds; "
        "here it runs under no_grad (same numbers).",
    ],
    "clipseg-b": [
        "the adapter zips over last_hidden_state, which iterates over the images of the batch instead of the "
        "extracted layers 3/6/9: step i uses image i's final-layer tokens (min(B, 3) steps).",
        "nn.TransformerEncoderLayer with batch_first=False on (B, N, D) input: attention runs across the images "
        "of the batch, so an image's output depends on the other images and on the batch size.",
        "transformers runs CLIPSeg's encoders under no_grad: the 'fine-tuned' CLIP encoder never trains "
        "(here it is frozen explicitly; same training).",
        "unused modules: reduce, trans_conv, trans_conv1, upsample_proj, decoder2.gn1 (dropped on conversion).",
    ],
    "ensemble-c": [
        "the BiomedCLIP decoder is built from a default CLIPSegConfig (patch 32, plain transposed conv): its "
        "output has twice the input size and is resized back (bilinear, align_corners=True).",
        "the same input_ids (BERT WordPiece) go to BERT and to CLIP's text encoder: it fails at BiomedCLIP's "
        "context 256 and feeds WordPiece ids to CLIP at 77; the reference variant therefore uses one WordPiece "
        "tokenizer with CLIP's context length.",
        "the CLIPSeg branch's adapter map never reaches the BiomedCLIP branch's UNet-D: each UNet-D gets its "
        "own branch's map twice ([map, encoder, map]).",
        "one convlast module serves two different fusions (BiomedCLIP branch and the final fusion).",
        "the CLIPSeg branch has CLIPSeg-B's batch-dependent adapter (see clipseg-b).",
        "a print in forward (dropped).",
        "unused modules: dense_layer, textembed, reduce_input_ids, trans_conv, upsample_proj, decoder2.gn1, "
        "decoder2.eca3, clip_seg.reduce, clip_seg.trans_conv, clip_seg.trans_conv1, clip_seg.upsample_proj, "
        "clip_seg.decoder2.gn1, clip_seg.decoder2.eca3 (dropped on conversion).",
    ],
}

FIXED_CHANGES = {
    "biomedclipseg-a": ["same computation as the reference (it has no output defect); dead work removed"],
    "clipseg-b": ["the adapter runs over the extracted layers of each image, with batch_first attention",
                  "the CLIPSeg encoders follow the CLIPSeg preset (freeze_encoder=False: really fine-tuned; "
                  "pass clipseg={'freeze_encoder': True} to freeze them)"],
    "ensemble-c": ["the BiomedCLIP branch's decoder matches its encoder (BiomedCLIPSeg's own, as in A)",
                   "each branch has its own tokenizer and context length (input_ids = [WordPiece | CLIP BPE])",
                   "the CLIPSeg branch's adapter map is injected into the BiomedCLIP branch's UNet-D",
                   "a separate fusion module per fusion; the CLIPSeg branch as in fixed clipseg-b"],
}
