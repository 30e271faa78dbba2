"""One place that turns ``--device`` and ``--precision`` into what torch and Lightning need.

Devices: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` (alias ``gpu``), ``cuda:N`` or
``mps`` (Apple-silicon GPUs, Lightning's MPS accelerator; refused in one line where there is none). On MPS, the
operations it lacks run on the CPU when ``PYTORCH_ENABLE_MPS_FALLBACK=1`` was set before torch was imported (the
``vlsm`` command sets it on macOS); :func:`mps_fallbacks` names them in the log, and :func:`mps_error` turns
PyTorch's error for a missing one into one line. Precision: Lightning's names (``32-true``, ``16-mixed``, ``bf16-mixed``, ...) or
``auto``: 16-bit mixed precision on CUDA (as the paper trains) — bfloat16 where the GPU supports it
(fp32's range, so no loss scaling and no fp16 overflow), else float16 — and fp32 on a CPU.
"""
from __future__ import annotations

import contextlib
import logging
import re
import warnings
from typing import Iterator, Optional, Union

import torch

AUTO = "auto"
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
#: set before torch is imported, it lets the operations MPS lacks run on the CPU (read once, at import)
MPS_FALLBACK_ENV = "PYTORCH_ENABLE_MPS_FALLBACK"
_FP16 = ("16", "16-mixed", "16-true")
_BF16 = ("bf16", "bf16-mixed", "bf16-true")
_FP32 = ("32", "32-true")
PRECISION_NAMES = ("auto",) + _FP32 + _FP16 + _BF16 + ("64", "64-true")
#: train.channels_last / --channels-last: auto (on a CUDA GPU), on, off
CHANNELS_LAST_MODES = ("auto", "on", "off")


def resolve_device(device: Union[str, torch.device, None] = AUTO) -> torch.device:
    """The ``torch.device`` for a device name (``auto`` picks CUDA when it is available)."""
    if isinstance(device, torch.device):
        return device
    if device in (None, AUTO):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = "cuda" if device == "gpu" else str(device)
    if name == "mps":
        require_mps()
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use {', '.join(DEVICE_NAMES)} or cuda:N") from None


def resolve_accelerator(device: Union[str, None] = AUTO) -> str:
    """Lightning's accelerator (``"gpu"``, ``"mps"`` or ``"cpu"``) for a training ``--device``."""
    if device not in (None, AUTO, "cpu", "cuda", "gpu", "mps"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or mps")
    if device in ("cuda", "gpu") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available here; use --device cpu")
    if device == "mps":
        require_mps()
        return "mps"
    return "gpu" if resolve_device(device).type == "cuda" else "cpu"


def require_mps() -> None:
    """Refuse ``--device mps`` in one line where PyTorch has no MPS device (not a Mac with Apple silicon and macOS
    12.3 or later, or a PyTorch built without MPS)."""
    backend = getattr(torch.backends, "mps", None)
    if backend is not None and backend.is_available():
        return
    why = ("this PyTorch was built without MPS" if backend is None or not backend.is_built()
           else "MPS needs a Mac with Apple silicon and macOS 12.3 or later")
    raise ValueError(f"--device mps requested but no MPS device (Apple-silicon GPU) is available here ({why}); "
                     f"use --device cpu, or --device cuda on an NVIDIA GPU")


#: PyTorch's warning when an operation MPS lacks falls back to the CPU, and its error when it may not
_MPS_OPERATION = re.compile(r"operator '([^']+)' is not currently (supported on the MPS backend|implemented for "
                            r"the MPS device)")


@contextlib.contextmanager
def mps_fallbacks(accelerator: str, logger: Optional[logging.Logger] = None) -> Iterator[set]:
    """While training on ``"mps"``: each operation that MPS lacks and that falls back to the CPU is named once in
    the log as it happens (instead of PyTorch's long warning), and all of them once more at the end. Yields the set
    of their names (other accelerators: an empty set, nothing changes)."""
    names: set = set()
    if accelerator != "mps":
        yield names
        return
    log = logger or logging.getLogger("vlsm")
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            found = _MPS_OPERATION.search(str(message))
            if found is None:
                return shown(message, category, filename, lineno, file, line)
            if found.group(1) not in names:
                names.add(found.group(1))
                log.warning("MPS lacks %s: it runs on the CPU (slower)", found.group(1))

        warnings.showwarning = show
        yield names
    if names:
        log.info("on MPS, %d operation(s) ran on the CPU: %s", len(names), ", ".join(sorted(names)))


def mps_error(err: BaseException) -> Optional[str]:
    """The one line for PyTorch's error about an operation MPS lacks (None for any other error)."""
    found = _MPS_OPERATION.search(str(err))
    if not isinstance(err, NotImplementedError) or found is None or "implemented" not in found.group(2):
        return None
    return (f"MPS lacks the operation {found.group(1)}: set {MPS_FALLBACK_ENV}=1 before Python starts (the vlsm "
            f"command does on macOS) to run it on the CPU, or train with --device cpu")


def resolve_precision(precision: Optional[str], device: Union[str, torch.device, None]) -> str:
    """Lightning's precision name: ``auto`` is ``bf16-mixed`` on a CUDA GPU that supports bfloat16,
    ``16-mixed`` on other CUDA GPUs and ``32-true`` on a CPU.

    ``device`` is a device name, a ``torch.device`` or Lightning's accelerator name (``gpu``).
    """
    if precision not in (None, AUTO):
        if str(precision) not in PRECISION_NAMES:
            raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISION_NAMES)}")
        return str(precision)
    dev = torch.device("cuda") if device == "gpu" else resolve_device(device)
    if dev.type != "cuda":
        return "32-true"
    # The paper trains in 16-bit mixed precision on GPU; bf16 where the GPU computes it natively
    # (emulated bf16 on older GPUs is slower than fp16)
    with torch.cuda.device(dev) if dev.index is not None else contextlib.nullcontext():
        return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "16-mixed"


def autocast_dtype(precision: str) -> Optional[torch.dtype]:
    """The autocast dtype of a resolved precision for inference (None: plain fp32)."""
    if precision in _FP16:
        return torch.float16
    if precision in _BF16:
        return torch.bfloat16
    if precision in _FP32:
        return None
    raise ValueError(f"precision {precision!r} is not supported for inference; use auto, 32-true, "
                     f"16-mixed or bf16-mixed")


def inference_precision(device: torch.device, precision: Optional[str] = AUTO):
    """A context manager running a forward pass in ``precision`` on ``device`` (autocast or nothing)."""
    dtype = autocast_dtype(resolve_precision(precision, device))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def channels_last_convolutions(model: torch.nn.Module) -> int:
    """Store the weights of every 2-D (transposed) convolution channels-last (NHWC), in place; returns
    how many. The CNN parts (UNet-D, the smp baselines, a ViT's patch embedding) then run cuDNN's NHWC
    kernels, which use tensor cores under mixed precision without layout transposes. Outputs equal
    the NCHW ones up to rounding; parameters keep their names and shapes (checkpoints are unchanged)."""
    convolutions = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    for module in convolutions:
        module.to(memory_format=torch.channels_last)
    return len(convolutions)


def contiguous_convolutions(model: torch.nn.Module) -> int:
    """Undo :func:`channels_last_convolutions` in place (plain NCHW weights, as safetensors and ONNX
    export want them); returns how many convolutions were converted."""
    convolutions = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    for module in convolutions:
        module.to(memory_format=torch.contiguous_format)
    return len(convolutions)


def use_channels_last(mode: str, device: Union[str, torch.device, None]) -> bool:
    """Whether training stores its convolutions channels-last: ``auto`` on a CUDA device (where cuDNN's
    NHWC kernels pay off), ``on`` anywhere (the CPU too, e.g. to test it), ``off`` never."""
    if mode not in CHANNELS_LAST_MODES:
        raise ValueError(f"unknown channels-last mode {mode!r}; use one of {', '.join(CHANNELS_LAST_MODES)}")
    if mode != AUTO:
        return mode == "on"
    return device == "gpu" or resolve_device(device).type == "cuda"


def tune_kernels(device: Union[str, torch.device, None], deterministic: bool = False) -> bool:
    """On CUDA, let cuDNN time its convolution algorithms once per input shape and keep the fastest
    (``torch.backends.cudnn.benchmark``), unless the run asked for deterministic kernels. Returns
    whether benchmarking is on."""
    on = not deterministic and (device == "gpu" or resolve_device(device).type == "cuda")
    torch.backends.cudnn.benchmark = on
    return on


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock time measures the model, not the queue."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


__all__ = ["resolve_device", "resolve_accelerator", "resolve_precision", "autocast_dtype", "inference_precision",
           "synchronize", "channels_last_convolutions", "contiguous_convolutions", "use_channels_last", "tune_kernels",
           "mps_error", "mps_fallbacks", "require_mps", "DEVICE_NAMES", "MPS_FALLBACK_ENV", "PRECISION_NAMES",
           "CHANNELS_LAST_MODES"]
