"""Models: registry, shared base class and the paper's architectures."""
from vlsm.models.base import ModelSpec, Preprocess, SegmentationModel
from vlsm.models.registry import create_model, get_entry, list_models, load_pretrained, register_model

__all__ = ["ModelSpec", "Preprocess", "SegmentationModel", "create_model", "get_entry",
           "list_models", "load_pretrained", "register_model"]


def __getattr__(name):
    # Stack lives with the ensembles; imported on demand to keep `import vlsm` light.
    if name == "Stack":
        from vlsm.models.ensembles import Stack

        return Stack
    raise AttributeError(name)
