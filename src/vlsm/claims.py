"""Run-folder claims live in :mod:`vlsm.runs.claims`; this name stays importable for older imports."""
import sys

from vlsm.runs import claims as _claims

sys.modules[__name__] = _claims
