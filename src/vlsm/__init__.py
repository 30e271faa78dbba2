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


__all__ = ["create_model", "list_models", "load_pretrained", "convert_reference_checkpoint", "__version__"]
