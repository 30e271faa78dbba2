"""vlsm: medical image segmentation with vision-language segmentation models and their ensembles.

Public API::

    import vlsm
    vlsm.list_models()
    model = vlsm.create_model("unet-d")
    predictor = vlsm.Predictor("runs/kvasir-unetd")
    run = vlsm.train("experiments/paper/unet-d-kvasir_polyp.yaml", overrides=["train.epochs=5"])
    vlsm.evaluate("runs/kvasir-unetd", split="val")
    vlsm.predict("scans/", "predictions/", "runs/kvasir-unetd")

Every command has its function in :mod:`vlsm.api` (``vlsm.api.export``, ``vlsm.api.bench``, ...); the most
used ones are here too. Names load their modules on first use, so ``import vlsm`` stays fast.
"""
import importlib

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first use)
_EXPORTS = {
    "create_model": "vlsm.models", "list_models": "vlsm.models", "load_pretrained": "vlsm.models",
    "Predictor": "vlsm.predictor", "Prediction": "vlsm.predictor",
    "train": "vlsm.api", "evaluate": "vlsm.api", "predict": "vlsm.api", "sweep": "vlsm.api", "table": "vlsm.api",
    "figure": "vlsm.api", "demo": "vlsm.api", "convert_checkpoint": "vlsm.api", "experiment": "vlsm.api",
}


def convert_reference_checkpoint(name: str, state_dict: dict) -> dict:
    """Map a state_dict of the reference VLSM-Ensemble code onto ``create_model(name, variant="reference")``."""
    from vlsm.models.reference import convert_reference_checkpoint as _convert

    return _convert(name, state_dict)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name == "api":
        return importlib.import_module("vlsm.api")
    raise AttributeError(f"module 'vlsm' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS, "api"])


__all__ = ["__version__", "convert_reference_checkpoint", *_EXPORTS]
