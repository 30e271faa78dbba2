"""`vlsm serve` in a real browser: Debian's Chromium, headless, driven by Playwright.

Two tiny runs (UNet-D and the ensemble CLIPSeg-B) are trained on a synthetic dataset through the CLI, `vlsm serve`
runs as a subprocess on loopback, and the page is used as a person would: pick a test image (Dice
and TP/FP/FN appear), upload an image and type a prompt (the mask offered for download equals
`vlsm.Predictor`'s), upload a file that is not an image and one that is too large (a message, and
the server keeps working). A second server asks for a login (`--auth-file`): a wrong password is
refused, the right one reaches the app, and the server's private folder is gone once it stops.
Set VLSM_UPDATE_SCREENSHOT=1 to copy the screenshot to docs/serve.png.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vlsm
from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset

CHROMIUM = "/usr/bin/chromium"
ENABLE = 'install Chromium (apt-get install chromium) and the extras (pip install -e ".[serve,test]")'
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAX_PIXELS = 20_000
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # a browser process and `vlsm serve` processes

if not Path(CHROMIUM).is_file():
    pytest.skip(f"browser test skipped: no {CHROMIUM}; to enable it, {ENABLE}", allow_module_level=True)
try:
    import gradio  # noqa: F401
    from playwright.sync_api import expect, sync_playwright
except ImportError as err:
    pytest.skip(f"browser test skipped: {err.name} is not installed; to enable it, {ENABLE}",
                allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    data = make_synthetic_dataset(root / "synthetic_polyp", n_train=8, n_val=2, n_test=3, image_size=96, seed=2)
    # a few epochs test the app; the README's screenshot deserves models that have learnt something
    epochs = "40" if os.environ.get("VLSM_UPDATE_SCREENSHOT") else "2"
    common = ["--preset", "tiny", "--data", str(data), "--batch-size", "4", "--num-workers", "0", "--no-progress",
              "--lr", "3e-3", "--cache", "--epochs", epochs, "--patience", epochs]
    unet, ensemble = root / "runs" / "unet-d", root / "runs" / "clipseg-b"
    assert main(["train", "--model", "unet-d", "--out", str(unet), *common]) == 0
    assert main(["train", "--model", "clipseg-b", "--out", str(ensemble), "--prompt", "p1", *common]) == 0
    return data, [unet, ensemble]


@contextlib.contextmanager
def _serving(run_dirs, *flags: str, tmp: Path):
    """`vlsm serve RUN... FLAGS` as a subprocess on loopback (its temporary files under ``tmp``): its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp)}
    env.pop("GRADIO_TEMP_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "vlsm.cli", "serve", *map(str, run_dirs), "--host", "127.0.0.1",
                             "--port", str(port), "--device", "cpu", "--max-pixels", str(MAX_PIXELS), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"vlsm serve did not come up at {url}:\n{proc.stdout.read()}")
            time.sleep(0.5)
    try:
        yield url
    finally:
        proc.terminate()  # SIGTERM: the server stops as on Ctrl+C and removes its private folder
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    _, run_dirs = runs
    with _serving(run_dirs, tmp=tmp_path_factory.mktemp("server-tmp")) as url:
        yield url


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)


@pytest.fixture()
def page(server):
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(60_000)
        page.goto(server)
        page.wait_for_selector("#segment")
        yield page
        browser.close()


def _upload(page, path: Path) -> None:
    page.set_input_files("#upload input[type=file]", str(path))


def _segment(page) -> None:
    page.click("#segment")
    expect(page.locator("#status")).to_contain_text("Segmented", timeout=60_000)


def _downloaded_mask(page, slot: int) -> np.ndarray:
    link = page.locator(f"#run-{slot}-download a").first
    expect(link).to_have_attribute("href", _anything())
    data = page.request.get(link.get_attribute("href")).body()
    return np.asarray(Image.open(io.BytesIO(data))) > 127


def _anything():
    import re

    return re.compile(r".+")


def test_app_in_chromium(page, runs, tmp_path):
    data, run_dirs = runs
    # 1. a dataset example: its p1 prompt is offered, each run shows Dice and the TP/FP/FN overlay
    page.click("#example input")
    page.locator("ul[role=listbox] li").first.click()
    expect(page.locator("#status")).to_contain_text("ground-truth mask")
    expect(page.locator("#prompt textarea, #prompt input").first).not_to_have_value("")
    _segment(page)
    for slot in range(2):
        expect(page.locator(f"#run-{slot}-info")).to_contain_text("Dice")
        expect(page.locator(f"#run-{slot}-overlay img")).to_be_visible()
        expect(page.locator(f"#run-{slot}-errors img")).to_be_visible()
    page.screenshot(path=str(tmp_path / "example.png"), full_page=True)

    # 2. an upload and a typed prompt: the mask offered for download is Predictor's
    image_file = tmp_path / "scan.png"
    rgb = np.asarray(Image.open(sorted((data / "images").iterdir())[0]).convert("RGB"))
    Image.fromarray(np.ascontiguousarray(rgb[:, ::-1])).resize((120, 100)).save(image_file)  # not a dataset image
    _upload(page, image_file)
    expect(page.locator("#status")).to_contain_text("Loaded")
    page.fill("#prompt textarea, #prompt input", "polyp")
    _segment(page)
    for slot, run in enumerate(run_dirs):
        expect(page.locator(f"#run-{slot}-overlay img")).to_be_visible()
        expect(page.locator(f"#run-{slot}-info")).to_contain_text("inference")
        expect(page.locator(f"#run-{slot}-errors img")).to_have_count(0)  # no ground truth, no Dice
        expect(page.locator(f"#run-{slot}-info")).not_to_contain_text("Dice")
        [expected] = vlsm.Predictor(run, device="cpu").predict(image_file, prompts="polyp")
        shown = _downloaded_mask(page, slot)
        assert shown.shape == expected.mask.shape == (100, 120)
        assert np.array_equal(shown, expected.mask), run.name
    page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)

    # 3. bad uploads: a message in the page, and the server keeps working
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image")
    _upload(page, not_image)
    expect(page.locator("#status")).to_contain_text("is not an image")
    expect(page.locator("#run-0-info")).to_be_hidden()
    page.click("#segment")
    expect(page.locator("#status")).to_contain_text("Upload an image or pick an example first")
    large = tmp_path / "huge.png"
    Image.new("RGB", (200, 150)).save(large)  # 30 000 pixels > MAX_PIXELS
    _upload(page, large)
    expect(page.locator("#status")).to_contain_text("too large")
    expect(page.locator("#status")).to_contain_text("--max-pixels")
    _upload(page, image_file)
    expect(page.locator("#status")).to_contain_text("Loaded")
    _segment(page)
    expect(page.locator("#run-1-overlay img")).to_be_visible()
    assert np.array_equal(_downloaded_mask(page, 0), vlsm.Predictor(run_dirs[0], device="cpu").predict(image_file)[0].mask)

    if os.environ.get("VLSM_UPDATE_SCREENSHOT"):
        shutil.copy(tmp_path / "example.png", REPO / "docs" / "serve.png")


def _log_in(page, user: str, password: str) -> None:
    page.fill("input[type=text]", user)
    page.fill("input[type=password]", password)
    page.get_by_role("button", name="Login").click()


def test_login_in_chromium(runs, tmp_path):
    """`--auth-file`: the page asks for a login, refuses a wrong password, lets the right one in; the
    upload lands in the server's private folder (mode 0700), which is gone once the server stops."""
    data, run_dirs = runs
    password = "pa ss:word"
    logins = tmp_path / "logins.txt"
    logins.write_text(f"# who may use this server\nann:{password}\nbob:another\n")
    server_tmp = tmp_path / "tmp"
    server_tmp.mkdir()
    with _serving(run_dirs[:1], "--auth-file", str(logins), "--examples", "0", tmp=server_tmp) as url:
        [private] = server_tmp.glob("vlsm-serve-*")
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(url, wait_until="load")
            expect(page.locator("input[type=password]")).to_be_visible()
            expect(page.locator("body")).to_contain_text("log in with a user name and password")
            assert page.locator("#upload").count() == 0
            _log_in(page, "ann", "wrong")
            expect(page.locator("body")).to_contain_text("Incorrect Credentials")
            expect(page.locator("input[type=password]")).to_be_visible()
            assert page.locator("#upload").count() == 0
            _log_in(page, "ann", password)
            expect(page.locator("#upload")).to_be_visible()
            image_file = tmp_path / "login-scan.png"
            Image.open(sorted((data / "images").iterdir())[0]).convert("RGB").save(image_file)
            _upload(page, image_file)
            expect(page.locator("#status")).to_contain_text("Loaded")
            browser.close()
        uploaded = list((private / "uploads").rglob("login-scan.png"))
        assert uploaded, sorted(private.rglob("*"))
    assert not private.exists() and not list(server_tmp.glob("vlsm-serve-*"))
