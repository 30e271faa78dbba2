"""Evaluation: metrics (pure functions and an accumulator), the one evaluation path
(:func:`evaluate_targets` over planned :class:`EvalTarget` s, :func:`plan_targets`), statistics, reports
and figures. The names below load their modules on first use, so ``vlsm.evaluation.metrics`` stays light."""

_LAZY = {"EvalTarget": "vlsm.evaluation.evaluate", "evaluate_targets": "vlsm.evaluation.evaluate",
         "evaluate_records": "vlsm.evaluation.evaluate", "format_results": "vlsm.evaluation.evaluate",
         "plan_targets": "vlsm.evaluation.planning"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vlsm.evaluation' has no attribute {name!r}")


__all__ = sorted(_LAZY)
