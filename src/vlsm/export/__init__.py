"""Export trained models for runtimes without PyTorch (ONNX)."""
from vlsm.export.onnx_export import export_onnx, is_export_folder, require_onnx, verify

FORMATS = ("onnx",)

__all__ = ["export_onnx", "is_export_folder", "require_onnx", "verify", "FORMATS"]
