"""Export a trained model to ONNX: ``model.onnx`` + ``preprocess.json`` + tokenizer files in one folder.

The graph maps ``pixel_values`` (B, 3, S, S) float32 — and for vision-language models ``input_ids``
and ``attention_mask`` (B, L) int64 — to ``logits`` (B, 1, S, S). The batch axis is dynamic; S and
L are fixed by the model's config. ``preprocess.json`` says everything a runtime must do around the
graph (resize, normalise, tokenize, resize the logits back, sigmoid, threshold), so the folder runs
with onnxruntime, numpy, Pillow and ``tokenizers`` alone (docs/inference.md, "Without PyTorch: ONNX export").

Models are exported in eval mode; ``vlsm export`` then compares onnxruntime's logits with torch's
(``verify``).
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import types
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from vlsm.errors import UserError
from vlsm.export.tokenizer import hf_tokenizers, tokenizer_file_names
from vlsm.models import SegmentationModel
from vlsm.utils import make_temp_dir

ONNX_FILE = "model.onnx"
PREPROCESS_FILE = "preprocess.json"
# preprocess.json's "format": marks a folder this exporter wrote (the only kind --overwrite replaces)
EXPORT_FORMAT = "vlsm-onnx/1"
# the lowest opset torch.export's ONNX exporter writes; one default for both exporters
DEFAULT_OPSET = 18
INSTALL_HINT = 'ONNX export needs the onnx packages: pip install "vlsm-ensemble[onnx]"'


def require_onnx() -> None:
    """Refuse with the pip extra when ``onnx`` or ``onnxruntime`` is not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (torch.export's ONNX exporter)
    except ImportError:
        raise UserError(INSTALL_HINT) from None


class _Graph(nn.Module):
    """The exported signature: positional tensors only (UNet-D's keyword inputs stay internal)."""

    def __init__(self, model: SegmentationModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, input_ids=None, attention_mask=None):
        return self.model(pixel_values, input_ids, attention_mask)


def _batch_zip_forward(self, last_hidden_state: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """BatchZipAdapter.forward with the batch size as data instead of a Python loop bound.

    The reference adapter runs min(B, depth) steps, step i on image i. A traced loop would freeze
    the step count at the example's batch size, so every step is computed (on zeros past the
    batch) and ``where(B > i, step, previous)`` keeps exactly the steps the original runs.
    """
    depth, (_, tokens, dim) = len(self.blocks), last_hidden_state.shape
    padded = torch.cat([last_hidden_state, last_hidden_state.new_zeros(depth, tokens, dim)])[:depth]
    batch = torch.ones_like(last_hidden_state[:, 0, 0]).sum()  # B as a tensor, dynamic in the graph
    a = self.blocks[0](self.film(self.reduces[0](padded[0]), cond))
    for i in range(1, depth):
        step = self.blocks[i](self.reduces[i](padded[i]) + a)
        a = torch.where(batch > i, step, a)
    return self.to_grid(a)


@contextlib.contextmanager
def exportable(model: nn.Module):
    """Swap in graph-friendly forwards that compute the same outputs (restored afterwards)."""
    from vlsm.models.adapters import BatchZipAdapter

    patched = [m for m in model.modules() if isinstance(m, BatchZipAdapter)]
    for module in patched:
        module.forward = types.MethodType(_batch_zip_forward, module)
    # nn.TransformerEncoderLayer's inference fast path is one fused op with no ONNX equivalent;
    # the regular path computes the same function from exportable ops
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield model
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for module in patched:
            del module.forward


def example_inputs(model: SegmentationModel, batch: int = 2, prompt: str = "polyp") -> dict:
    """Random pixel values and tokenized prompts of the model's input shapes (numpy-ready tensors)."""
    s = model.preprocess.image_size
    inputs = {"pixel_values": torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(0))}
    if model.uses_text:
        tokens = model.get_tokenizer()([prompt] * batch)
        inputs.update(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    return inputs


def attends_across_batch(model: nn.Module) -> bool:
    """True for the reference CLIPSeg-B adapter (also inside Ensemble-C), whose attention runs over the
    images of the batch: the TorchScript exporter freezes that sequence length at the example's batch."""
    from vlsm.models.adapters import BatchZipAdapter

    return any(isinstance(m, BatchZipAdapter) for m in model.modules())


def export_graph(model: SegmentationModel, path: Path, opset: int = DEFAULT_OPSET) -> list[str]:
    """Write ``model`` (in eval mode) as an ONNX graph with a dynamic batch axis; returns its input names.

    The TorchScript exporter (fast, exact for every model here) is used unless the model attends
    across the batch; then ``torch.export``'s symbolic shapes keep the batch dynamic (slower to export).
    """
    graph = _Graph(model).eval()  # eval() on the wrapper: the exporter restores *its* mode afterwards
    inputs = example_inputs(model)  # batch 2: a batch of 1 would be specialised by torch.export
    names = list(inputs)
    dynamo = attends_across_batch(model)
    if dynamo:
        batch = torch.export.Dim("batch", min=1)
        axes = {"dynamic_shapes": tuple({0: batch} for _ in names), "report": False, "verbose": False}
    else:
        axes = {"dynamic_axes": {name: {0: "batch"} for name in names + ["logits"]}}
    with exportable(model), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # tracer chatter about shape checks in model code (they hold: S and L are fixed by the config)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        warnings.filterwarnings("ignore", message="# The axis name")  # torch.export naming the one batch axis
        torch.onnx.export(graph, tuple(inputs[n] for n in names), str(path), dynamo=dynamo, opset_version=opset,
                          input_names=names, output_names=["logits"], **axes)
    return names


def preprocess_info(model: SegmentationModel, input_names: list[str], threshold: float,
                    opset: int, prompt: Optional[str], tokenizer_files: list[str], tta: bool = False,
                    postprocessing: Optional[dict] = None) -> dict:
    """What a runtime must do around the graph (written as ``preprocess.json``; vlsm.data.preprocessing): with
    ``tta``, the flips of :data:`vlsm.predictor.TTA_FLIPS`; ``postprocessing``: the run's rule (``rule``,
    ``min_size``)."""
    from vlsm.data.preprocessing import preprocess_json
    from vlsm.predictor import TTA_FLIPS

    return preprocess_json(model, export_format=EXPORT_FORMAT, opset=opset, input_names=input_names,
                           threshold=threshold, default_prompt=prompt, tokenizer_files=tokenizer_files,
                           tta_flip_axes=list(TTA_FLIPS.values()) if tta else [()], postprocessing=postprocessing)


def write_export(model: SegmentationModel, out: Path, *, threshold: float = 0.5, opset: int = DEFAULT_OPSET,
                 prompt: Optional[str] = None, tta: bool = False, postprocessing: Optional[dict] = None) -> list[str]:
    """Write model.onnx, preprocess.json and (text models) tokenizer files into the folder ``out``."""
    names = export_graph(model, out / ONNX_FILE, opset)
    files: list[str] = []
    if model.uses_text:
        tok = model.get_tokenizer()
        parts = hf_tokenizers(tok)
        files = tokenizer_file_names(len(parts))
        for hf, name in zip(parts, files):
            hf.save(str(out / name))
        if hasattr(tok, "save"):
            tok.save(out)  # vlsm's own tokenizer files too: vlsm.text.load_tokenizer(out) works
    info = preprocess_info(model, names, threshold, opset, prompt, files, tta, postprocessing)
    (out / PREPROCESS_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return names


def is_export_folder(path: Path) -> bool:
    try:
        return json.loads((path / PREPROCESS_FILE).read_text()).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_destination(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace an earlier export, or choose another OUT")
    if not out.is_dir() or not is_export_folder(out):
        raise UserError(f"{out} exists and is not a folder written by `vlsm export` (no {PREPROCESS_FILE} of "
                        f"format {EXPORT_FORMAT}); --overwrite replaces only earlier exports. Choose another OUT")


def verify(model: SegmentationModel, folder: Path, batch: int = 2) -> float:
    """Max abs difference between onnxruntime's and torch's logits on random inputs."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    inputs = example_inputs(model, batch)
    with torch.no_grad():
        expected = _Graph(model).eval()(*inputs.values()).numpy()
    got = session.run(["logits"], {k: v.numpy() for k, v in inputs.items()})[0]
    return float(np.abs(got - expected).max())


def check_export(model: SegmentationModel, folder: Path) -> float:
    """Compare onnxruntime with torch at batch sizes 1 and 3 (the graph was traced at 2, so a batch
    size frozen into the graph shows) and record the difference in preprocess.json.

    Raises UserError when the graph fails or differs by more than 1e-3 of the logits' scale.
    """
    name = model.spec.name
    try:
        diffs = [verify(model, folder, batch) for batch in (1, 3)]
    except Exception as err:  # noqa: BLE001 - onnxruntime's failures have many types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{name} does not export to ONNX with a dynamic batch (onnxruntime: {first[:300]}); "
                        f"the exportable models are UNet-D, CLIPSeg, BiomedCLIPSeg(-D), the ensembles and the "
                        f"smp baselines") from None
    with torch.no_grad():
        scale = max(1.0, float(_Graph(model).eval()(*example_inputs(model, 1).values()).abs().max()))
    diff = max(diffs)
    if not diff <= 1e-3 * scale:
        raise UserError(f"{name}: the ONNX graph's logits differ from PyTorch's by {diff:.3g} (logit scale "
                        f"{scale:.3g}); not exported")
    info_file = folder / PREPROCESS_FILE
    info = json.loads(info_file.read_text())
    info["max_abs_logit_diff_vs_torch"] = diff
    info_file.write_text(json.dumps(info, indent=2) + "\n")
    return diff


def export_onnx(model: SegmentationModel, out, *, threshold: float = 0.5, opset: int = DEFAULT_OPSET,
                prompt: Optional[str] = None, overwrite: bool = False, tta: bool = False,
                postprocessing: Optional[dict] = None) -> Path:
    """Export ``model`` to the folder ``out`` (created; an earlier export replaced only with ``overwrite``).
    ``threshold``, ``tta`` and ``postprocessing`` (``{"rule", "min_size"}``) go into ``preprocess.json``: what the
    run's evaluation used.

    Everything is written to a temporary folder beside ``out`` first, checked against onnxruntime
    (:func:`check_export`) and moved into place at the end, so a failed export leaves nothing behind.
    """
    require_onnx()
    if opset < DEFAULT_OPSET:
        raise UserError(f"--opset must be >= {DEFAULT_OPSET}, got {opset}")
    out = Path(out)
    check_destination(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    tmp = make_temp_dir(out.parent, prefix=f".{out.name}.")
    try:
        write_export(model.cpu(), tmp, threshold=threshold, opset=opset, prompt=prompt, tta=tta,
                     postprocessing=postprocessing)
        check_export(model, tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        model.train(was_training)
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


__all__ = ["export_onnx", "require_onnx", "verify", "exportable", "example_inputs", "is_export_folder",
           "ONNX_FILE", "PREPROCESS_FILE", "EXPORT_FORMAT", "INSTALL_HINT"]
