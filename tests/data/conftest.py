"""Data tests never write into the user's cache: the decoded-image cache lives in the test's tmp folder."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VLSM_CACHE_DIR", str(tmp_path / "vlsm-cache"))
    return tmp_path / "vlsm-cache"
