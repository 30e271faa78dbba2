"""Shared test fixtures. Real data is read from ../shared/data or $VLSM_DATA_ROOT, never copied."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One compute thread per process, set before torch is first imported: the tests run tiny models, which are as
# fast on one thread, and a second thread only fights the other processes (a subprocess under test, DataLoader
# workers, other jobs) for the cores. Subprocesses inherit it, so in-process and subprocess runs round alike.
# Set OMP_NUM_THREADS to use more.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def private_cache_root(tmp_path_factory):
    """Caches (the decode-once image cache) go to the session's tmp folder, never the user's
    ~/.cache. Session-wide, so module-scoped fixtures that train runs use it too."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("vlsm-cache")
        mp.setenv("VLSM_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="session", autouse=True)
def torch_threads():
    """torch's thread count is OMP_NUM_THREADS's (1 unless set), even where torch was imported before this file."""
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Every test runs offline: weight sources resolve from local folders and the HF cache only, and a
    missing file fails instead of downloading. Set per test, so nothing leaks between tests."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ------------------------------------------------------------------ trained runs shared by the whole session
# One training per kind for the session, made with the Python API (vlsm.api.train, the settings of
# tiny_runs.TRAIN), instead of one per module. Each test borrows them read-only (tiny_runs.unchanged): a test
# that changed one fails, so a test that must change one copies it first (shutil.copytree).
@pytest.fixture(scope="session")
def _synthetic_data(tmp_path_factory) -> Path:
    from vlsm.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("shared") / "synthetic_polyp", n_train=8, n_val=4,
                                  n_test=5, image_size=48, seed=3)


@pytest.fixture(scope="session")
def _unet_run(_synthetic_data, tmp_path_factory) -> Path:
    from tiny_runs import train_tiny

    return train_tiny(_synthetic_data, tmp_path_factory.mktemp("shared-runs") / "unetd",
                      {"train.epochs": 2, "train.keep_checkpoints": "all"})


@pytest.fixture(scope="session")
def _clipseg_run(_synthetic_data, tmp_path_factory) -> Path:
    from tiny_runs import train_tiny

    return train_tiny(_synthetic_data, tmp_path_factory.mktemp("shared-runs") / "clipseg",
                      {"model.name": "clipseg", "model.overrides.image_size": 64, "data.prompt": "p1",
                       "train.epochs": 1})


@pytest.fixture()
def synthetic_data(_synthetic_data) -> Path:
    """synthetic_polyp: 8 train / 4 val / 5 test images of 48 px (seed 3), shared by the session."""
    from tiny_runs import unchanged

    with unchanged(_synthetic_data):
        yield _synthetic_data


@pytest.fixture()
def unet_run(_unet_run, synthetic_data) -> Path:
    """A finished run of tiny UNet-D (32 px, 2 epochs, seed 1) on synthetic_data, every checkpoint kept
    (checkpoints/best.ckpt and last.ckpt), shared by the session."""
    from tiny_runs import unchanged

    with unchanged(_unet_run):
        yield _unet_run


@pytest.fixture()
def clipseg_run(_clipseg_run, synthetic_data) -> Path:
    """A finished run of tiny CLIPSeg (64 px, 1 epoch, the dataset's prompt p1: no fixed prompt text) on
    synthetic_data, shared by the session."""
    from tiny_runs import unchanged

    with unchanged(_clipseg_run):
        yield _clipseg_run


def shared_root() -> Path:
    """The shared folder beside the checkout (or $VLSM_DATA_ROOT's parent layout)."""
    return REPO.parent / "shared"


def data_root() -> Path:
    env = os.environ.get("VLSM_DATA_ROOT")
    return Path(env) if env else shared_root() / "data"


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path}: put the project's shared/ folder beside the checkout "
                    f"or set VLSM_DATA_ROOT to the folder that holds kvasir_polyp/ and clinicdb_polyp/")
    return path


@pytest.fixture(scope="session")
def kvasir_root() -> Path:
    return _require(data_root() / "kvasir_polyp", "Kvasir-SEG (medvlsm layout)")


@pytest.fixture(scope="session")
def kvasir_runs(kvasir_root, tmp_path_factory):
    """Kvasir-SEG runs trained once per session, on first use, and shared by the real-data tests
    (tests/kvasir_runs.py: the budgets)."""
    from kvasir_runs import KvasirRuns

    return KvasirRuns(kvasir_root, tmp_path_factory.mktemp("kvasir-runs"))


@pytest.fixture(scope="session")
def clinicdb_root() -> Path:
    return _require(data_root() / "clinicdb_polyp", "CVC-ClinicDB (medvlsm layout)")


@pytest.fixture(scope="session")
def medvlsm_anns_root() -> Path:
    return _require(data_root() / "medvlsm_anns", "medvlsm split/prompt files")


@pytest.fixture(scope="session")
def raw_samples_root() -> Path:
    env = os.environ.get("VLSM_DATA_ROOT")
    base = Path(env).parent if env else shared_root()
    return _require(base / "raw-samples", "raw dataset samples")


@pytest.fixture()
def live_pid():
    """The pid of a process on this host that runs for the whole test (a live claim holder)."""
    from claim_helpers import live_process

    with live_process() as pid:
        yield pid


@pytest.fixture()
def dead_pid():
    """The pid of a process on this host that has ended (a stale claim holder)."""
    from claim_helpers import reaped_pid

    return reaped_pid()
