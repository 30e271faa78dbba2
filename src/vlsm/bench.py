"""Throughput, memory and checkpoint size of any registered model: ``vlsm bench`` and ``vlsm.bench``.

Everything runs offline on randomly initialised models (paper size by default), so the figures
describe the architecture and the code path, not the weights. Measured per model and precision:

* train step: forward + loss (BCE + soft Dice, as in training) + backward + AdamW step, images/s;
* cached train step (models with a frozen image encoder): the same step on the encoder's stored
  features, as epochs 2+ run with training's feature cache (:mod:`vlsm.training.feature_cache`);
* inference: forward under ``no_grad`` in eval mode, images/s;
* data loading (with ``data=``): the training split through ``SegmentationDataset`` and a
  ``DataLoader``, images/s for the first pass and for a later pass (what caching buys);
* peak memory of the measured steps: CUDA's max allocated on a GPU, the peak resident set size
  (sampled) on a CPU;
* checkpoint size: the bytes of ``last.ckpt`` as training writes it for the model trained from its pretrained
  sources: slim (:mod:`vlsm.models.frozen`), i.e. without the frozen parameters, which would come from those
  sources, with the trainable ones, the buffers and the AdamW state. (The models here are random-init and
  have no source; their frozen parameters are counted as sourced.)

Compare variants side by side in one process (these machines are noisy): ratios between rows of
one table mean more than absolute numbers across runs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import threading
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from vlsm.devices import autocast_dtype, resolve_device, synchronize

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
SAMPLE_PROMPT = "a small round pink polyp in the upper left part of the image"


@dataclass
class BenchResult:
    model: str
    variant: Optional[str]
    preset: str
    image_size: int
    batch_size: int
    precision: str
    device: str
    params_total: int
    params_trainable: int
    train_img_s: float
    infer_img_s: float
    peak_memory_gb: float
    memory_kind: str
    checkpoint_mb: float
    text_tokens: int = 0  # the sample prompt's length in tokens (its attention mask)
    loader_first_img_s: Optional[float] = None
    loader_later_img_s: Optional[float] = None
    epoch_seconds: Optional[float] = None
    train_images: Optional[int] = None
    cached_train_img_s: Optional[float] = None  # the train step on stored frozen image features


    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class PeakRSS:
    """Peak resident set size of this process while the block runs, sampled every few milliseconds
    (``ru_maxrss`` cannot be reset, so it would report the largest model of a whole table)."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * self._page
        except OSError:  # not Linux: the process-lifetime peak is the best there is
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def autocast_for(precision: str, device: torch.device):
    """The autocast context of a Lightning precision string (``32-true`` runs without one)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    dtype = autocast_dtype(precision)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def sample_text(model, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of a typical descriptive prompt from the model's own tokenizer.

    A tokenizer that needs files from a weights folder (BiomedCLIP's WordPiece vocabulary) is not
    there for a random-init model: then random ids padded to the context length stand in, with as
    many real tokens as the prompt has words plus the two special tokens (about what WordPiece gives).
    """
    from vlsm.text.tokenizers import TokenizerNotAvailableError

    try:
        batch = model.get_tokenizer()([SAMPLE_PROMPT] * batch_size)
        return batch["input_ids"], batch["attention_mask"]
    except TokenizerNotAvailableError:
        length = max(1, int(model.preprocess.context_length or 1))
        used = min(length, len(SAMPLE_PROMPT.split()) + 2)
        ids = torch.randint(1, 1000, (batch_size, length), generator=torch.Generator().manual_seed(0))
        mask = torch.zeros_like(ids)
        mask[:, :used] = 1
        return ids * mask, mask


def checkpoint_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, slim: bool = True) -> int:
    """Size of a training checkpoint's payload (model state as training saves it + optimizer state), as
    ``torch.save`` writes it. ``slim``: without the frozen parameters, as training saves a model whose frozen
    parts come from a pretrained source (here every frozen parameter counts as sourced)."""
    from vlsm.models.frozen import slim_state_dict
    from vlsm.runs.checkpoints import task_state

    buffer = io.BytesIO()
    weights = model.state_dict()
    if slim:
        weights = slim_state_dict(weights, [n for n, p in model.named_parameters(remove_duplicate=False)
                                            if not p.requires_grad])
    state = {"state_dict": task_state(weights),
             "optimizer_states": [optimizer.state_dict()]}
    torch.save(state, buffer)
    return buffer.tell()


def _timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def loader_throughput(model, data: str, batch_size: int, num_workers: int, passes: int = 2,
                      max_batches: Optional[int] = None) -> tuple[list[float], int]:
    """Images/s of each pass over the training split of ``data`` (first pass decodes; later passes
    show what any caching gives), and the number of training images."""
    from torch.utils.data import DataLoader

    from vlsm.data import SegmentationDataset, load_split

    records = load_split(data, "train")
    dataset = SegmentationDataset(records, model.preprocess, model.get_tokenizer(), prompt="p1")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        persistent_workers=num_workers > 0)
    rates = []
    for epoch in range(passes):
        dataset.set_epoch(epoch)
        seen, start = 0, time.perf_counter()
        for i, batch in enumerate(loader):
            seen += batch["pixel_values"].shape[0]
            if max_batches is not None and i + 1 >= max_batches:
                break
        rates.append(seen / max(time.perf_counter() - start, 1e-9))
    return rates, len(records)


def bench_model(name: str, *, preset: str = "paper", variant: Optional[str] = None,
                image_size: Optional[int] = None, batch_size: int = 2, precision: str = "32-true",
                device: str = "auto", steps: int = 3, warmup: int = 1, data: Optional[str] = None,
                num_workers: int = 2, loader_batches: Optional[int] = None, **model_options) -> BenchResult:
    """Measure one model at one precision (see the module docstring for what is measured)."""
    from vlsm.models import create_model
    from vlsm.training.losses import BCEDiceLoss

    dev = resolve_device(device)
    if image_size:
        model_options["image_size"] = image_size
    model = create_model(name, preset=preset, variant=variant, **model_options).to(dev)
    size = model.preprocess.image_size
    total, trainable = model.parameter_counts()
    pixels = torch.randn(batch_size, 3, size, size, device=dev)
    target = (torch.rand(batch_size, 1, size, size, device=dev) > 0.5).float()
    ids, attention = (t.to(dev) for t in sample_text(model, batch_size))
    loss_fn = BCEDiceLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4) if params else None
    scaler = torch.amp.GradScaler(dev.type) if precision == "16-mixed" and dev.type == "cuda" else None

    def optimizer_step(forward):
        """One forward + backward + optimizer step of ``forward()``'s logits."""
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(precision, dev):
            loss = loss_fn(forward(), target)["loss"]
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    features = None

    def train_step():
        optimizer_step(lambda: model(pixels, ids, attention))

    def cached_train_step():
        # what SegmentationTask runs once the feature cache holds the batch's images
        optimizer_step(lambda: model.forward_with_features(pixels, features, ids, attention))

    def infer_step():
        with torch.no_grad(), autocast_for(precision, dev):
            model(pixels, ids, attention)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with PeakRSS() as rss:
        model.train()
        train_s = _timed(train_step, steps, warmup, dev) if optimizer is not None else float("nan")
        cached_s = None
        if optimizer is not None and model.has_frozen_image_features():
            with torch.no_grad(), autocast_for(precision, dev):
                features = model.frozen_image_features(pixels)
            cached_s = _timed(cached_train_step, steps, warmup, dev)
        model.eval()
        infer_s = _timed(infer_step, steps, warmup, dev)
    if dev.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(dev), "cuda max allocated"
    else:
        peak, kind = rss.peak, "peak RSS"
    ckpt = checkpoint_bytes(model, optimizer) if optimizer is not None else 0
    result = BenchResult(model=name, variant=model.spec.variant, preset=preset, image_size=size,
                         batch_size=batch_size, precision=precision, device=str(dev), params_total=total,
                         params_trainable=trainable, train_img_s=batch_size / train_s,
                         infer_img_s=batch_size / infer_s, peak_memory_gb=peak / 2**30, memory_kind=kind,
                         checkpoint_mb=ckpt / 2**20, text_tokens=int(attention.sum(1).max()) if attention.numel() else 0,
                         cached_train_img_s=None if cached_s is None else batch_size / cached_s)
    if data:
        rates, n_train = loader_throughput(model, data, batch_size, num_workers, max_batches=loader_batches)
        result.loader_first_img_s, result.loader_later_img_s = rates[0], rates[-1]
        result.train_images = n_train
        # An epoch runs at the slower of the model and the steady-state loader.
        result.epoch_seconds = n_train / min(result.train_img_s, result.loader_later_img_s)
    return result


def bench(models: Sequence[str], *, precisions: Sequence[str] = ("32-true",), variants: Sequence[Optional[str]] = (None,),
          **kwargs) -> list[BenchResult]:
    """``bench_model`` for every model x variant x precision, in this process, one after another.
    Variants apply to the models that have them (the ensembles); the others run once."""
    from vlsm.models import get_entry

    results = []
    for name in models:
        own = [v for v in variants if v in get_entry(name).variants]
        for variant in own or [None]:
            for precision in precisions:
                results.append(bench_model(name, variant=variant, precision=precision, **kwargs))
    return results


def format_table(results: Sequence[BenchResult]) -> str:
    """A fixed-width table; empty cells where a figure was not measured."""

    def num(v, fmt):
        width = int(fmt.split(".")[0])
        return format(v, fmt) if v is not None and v == v else "-".rjust(width)

    head = (f"{'model':<16} {'variant':<9} {'precision':<10} {'px':>4} {'batch':>5} {'tokens':>6} "
            f"{'train img/s':>11} {'cached img/s':>12} {'infer img/s':>11} {'load 1st':>9} {'load 2nd+':>9} {'epoch s':>8} "
            f"{'peak GB':>8} {'ckpt MB':>8} {'params M (train)':>17}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.model:<16} {r.variant or '':<9} {r.precision:<10} {r.image_size:>4} {r.batch_size:>5} "
            f"{r.text_tokens:>6} {num(r.train_img_s, '11.2f')} {num(r.cached_train_img_s, '12.2f')} "
            f"{num(r.infer_img_s, '11.2f')} "
            f"{num(r.loader_first_img_s, '9.1f')} {num(r.loader_later_img_s, '9.1f')} {num(r.epoch_seconds, '8.0f')} "
            f"{r.peak_memory_gb:8.2f} {r.checkpoint_mb:8.1f} "
            f"{r.params_total / 1e6:8.2f} ({r.params_trainable / 1e6:6.2f})")
    if results:
        lines.append(f"memory: {results[0].memory_kind}; device: {results[0].device}; ckpt MB: last.ckpt when trained "
                     f"from pretrained sources (slim: trainable parameters, buffers, AdamW state)")
    return "\n".join(lines)
