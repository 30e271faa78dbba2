"""vlsm: medical image segmentation with vision-language segmentation models and their ensembles.

Public API::

    import vlsm
    vlsm.list_models()
    model = vlsm.create_model("unet-d")
    state = vlsm.convert_reference_checkpoint("unet-d", reference_state_dict)
"""
from vlsm.models import create_model, list_models, load_pretrained

__version__ = "0.1.0"


def convert_reference_checkpoint(name: str, state_dict: dict) -> dict:
    """Map a state_dict of the reference VLSM-Ensemble code onto ``create_model(name, variant="reference")``."""
    from vlsm.models.reference import convert_reference_checkpoint as _convert

    return _convert(name, state_dict)


def __getattr__(name):  # vlsm.Predictor / vlsm.Prediction without importing the data stack up front
    if name in ("Predictor", "Prediction"):
        from vlsm import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'vlsm' has no attribute {name!r}")


__all__ = ["create_model", "list_models", "load_pretrained", "convert_reference_checkpoint", "Predictor",
           "Prediction", "__version__"]
