"""The package as users get it: the sdist and the wheel build without warnings, and the wheel installed
alone (not the editable checkout) lists the models, trains and predicts.

Offline: the build runs without isolation (the test environment has the build backend), and the
clean virtual environment takes the wheel with ``--no-deps``; its dependencies (torch, Lightning...)
come from this environment's site-packages through ``PYTHONPATH``, which Python reads without running
their ``.pth`` files, so the checkout's editable install cannot leak in.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env.update(kwargs.pop("env", {}))
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("build", reason="the packaging test needs `build` (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("dist")
    done = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out, done.stdout + done.stderr


def test_build_has_no_warnings(built):
    _, log = built
    noisy = [line for line in log.splitlines() if "warn" in line.lower() or "deprecat" in line.lower()]
    assert not noisy, "\n".join(noisy)


def test_wheel_holds_the_model_configs_and_licence(built):
    out, _ = built
    [wheel] = out.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    configs = sorted(n for n in names if n.startswith("vlsm/models/configs/") and n.endswith(".json"))
    shipped = sorted(p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src/vlsm/models/configs").rglob("*.json"))
    assert configs == shipped
    assert any(n.endswith("licenses/LICENSE") for n in names)
    [sdist] = out.glob("*.tar.gz")
    assert sdist.stat().st_size > 0


def test_installed_wheel_trains_and_predicts(built, tmp_path):
    out, _ = built
    [wheel] = out.glob("*.whl")
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", venv]).returncode == 0
    python = venv / "bin" / "python"
    done = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel])
    assert done.returncode == 0, done.stderr[-2000:]
    deps = {"PYTHONPATH": sysconfig.get_paths()["purelib"], "VLSM_CACHE_DIR": str(tmp_path / "cache"),
            "HF_HUB_OFFLINE": "1"}
    where = _run([python, "-c", "import vlsm; print(vlsm.__file__)"], env=deps, cwd=tmp_path)
    assert where.returncode == 0 and str(venv) in where.stdout, where.stdout + where.stderr
    vlsm = venv / "bin" / "vlsm"
    models = _run([vlsm, "models"], env=deps, cwd=tmp_path)
    assert models.returncode == 0 and "unet-d" in models.stdout and "clipseg-b" in models.stdout, models.stderr
    # one process for the rest (each new one imports torch and Lightning again)
    steps = [
        ["data", "synthetic", tmp_path / "syn", "--n-train", "4", "--n-val", "2", "--n-test", "2", "--image-size", "32"],
        ["train", "--model", "clipseg-b", "--preset", "tiny", "--img-size", "32", "--data", tmp_path / "syn",
         "--out", tmp_path / "run", "--epochs", "1", "--batch-size", "2", "--num-workers", "0", "--no-progress"],
        ["predict", "--checkpoint", tmp_path / "run", "-i", tmp_path / "syn" / "images", "-o", tmp_path / "pred",
         "--prompt", "polyp"],
    ]
    script = ("import sys\nfrom vlsm.cli import main\n"
              + "".join(f"assert main({[str(a) for a in argv]!r}) == 0, {argv[0]!r}\n" for argv in steps))
    done = _run([python, "-c", script], env=deps, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout[-1500:], done.stderr[-1500:])
    assert len(list((tmp_path / "pred").glob("*.png"))) == 8
