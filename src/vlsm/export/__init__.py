"""Export trained models: for runtimes without PyTorch (ONNX), or as a standalone model folder."""
from vlsm.export.onnx_export import export_onnx, is_export_folder, require_onnx, verify
from vlsm.export.standalone import export_standalone

FORMATS = ("onnx",)

__all__ = ["export_onnx", "export_standalone", "is_export_folder", "require_onnx", "verify", "FORMATS"]
