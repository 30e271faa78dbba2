"""Who may use `vlsm serve`: logins, the loopback rule, the limits and the private folder, attacked directly.

The pure rules (vlsm.serve.security) without Gradio; the CLI's refusals in-process (no model is
loaded); then a real server from `vlsm.serve.serve(auth=...)` probed over HTTP the way a stranger
on the network would: every API route answers 401 before a login, a wrong password is refused,
direct calls cannot skip the queue, an oversized upload is refused, and the uploads live in a
private folder that is gone once the server closes. The login form itself is driven in Chromium by
tests/serve/test_browser.py.
"""
from __future__ import annotations

import os
import socket
import stat
import tempfile

import pytest

import vlsm.serve
import vlsm.serve.session
from naming import raises_naming
from vlsm.cli import main
from vlsm.errors import UserError
from vlsm.serve.security import (
    ServerFiles,
    auth_file_warning,
    check_at_least,
    check_auth,
    check_exposure,
    is_loopback,
    parse_credentials,
    parse_file_size,
    read_auth_file,
)

PASSWORD = "s3cret:with-colon"


@pytest.fixture()
def tiny_run(unet_run):
    """The session's tiny UNet-D run (tests/conftest.py), read-only."""
    return unet_run


@pytest.fixture()
def no_model_loading(monkeypatch):
    """Refusals must come before any model is loaded: loading fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr(vlsm.serve.session, "load_runs", refuse)
    monkeypatch.setattr(vlsm.serve.session, "Predictor", refuse)


@pytest.fixture()
def private_tmp(tmp_path, monkeypatch):
    """tempfile's folder for this test: what the server leaves behind shows up here."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.5.6.7", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("10.0.0.1", False), ("example.org", False),
    ("", False),
])
def test_loopback_decisions(host, loopback):
    assert is_loopback(host) is loopback
    if loopback:
        check_exposure(host, None, False)  # served on this machine only: no login needed
    else:
        with pytest.raises(UserError) as refused:
            check_exposure(host, None, False)
        message = str(refused.value)
        assert f"--host {host}" in message and "--auth-file FILE" in message
        assert "--auth USER:PASSWORD" in message and "--no-auth" in message and "\n" not in message
    check_exposure(host, [("ann", PASSWORD)], False)  # a login: any host
    check_exposure(host, None, True)                  # an open page, on purpose


def test_exposure_conflicts_and_python_wording():
    with pytest.raises(UserError, match="--no-auth.*--auth"):
        check_exposure("0.0.0.0", [("ann", PASSWORD)], True)
    with raises_naming(UserError, "host='0.0.0.0'", "auth=[(user, password)", "allow_open=True"):
        check_exposure("0.0.0.0", None, False, python=True)


def test_auth_file_parsing(tmp_path):
    good = tmp_path / "logins.txt"
    good.write_text(f"# who may log in\n\nann:{PASSWORD}\r\n  bob : pw two  \n# eve:old\n")
    assert read_auth_file(good) == [("ann", PASSWORD), ("bob", "pw two")]
    good.chmod(0o644)
    assert "chmod 600" in auth_file_warning(good) and str(good) in auth_file_warning(good)
    good.chmod(0o600)
    assert auth_file_warning(good) is None
    for number, line in ((2, "ann-without-colon"), (2, ":no-user"), (2, "no-password:"), (2, "   :x"), (2, "carl:   "),
                         (2, f"ann {PASSWORD}")):
        bad = tmp_path / "bad.txt"
        bad.write_text(f"ann:{PASSWORD}\n{line}\n")
        with pytest.raises(UserError) as refused:
            read_auth_file(bad)
        message = str(refused.value)
        assert f"{bad} line {number}" in message and "user:password" in message and PASSWORD not in message
        assert line.strip() not in message  # the culprit line may hold a password: never echoed
    twice = tmp_path / "twice.txt"
    twice.write_text(f"ann:{PASSWORD}\nbob:x\nann:other\n")
    with raises_naming(UserError, f"{twice} line 3", "'ann'", "line 1") as refused:
        read_auth_file(twice)
    assert "other" not in str(refused.value)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody yet\n\n")
    with raises_naming(UserError, str(empty), "user:password"):
        read_auth_file(empty)
    with raises_naming(UserError, str(tmp_path / "missing.txt"), "--auth-file"):
        read_auth_file(tmp_path / "missing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00ann")
    with pytest.raises(UserError, match="binary.txt is not UTF-8"):
        read_auth_file(binary)


def test_credentials_and_python_auth():
    assert parse_credentials(f"ann:{PASSWORD}") == ("ann", PASSWORD)
    for bad in ("ann", "ann:", f":{PASSWORD}", ""):
        with pytest.raises(UserError, match="--auth expects USER:PASSWORD.*--auth-file") as refused:
            parse_credentials(bad)
        assert (bad or "@@") not in str(refused.value).replace("USER:PASSWORD", "")
    assert check_auth(None) is None
    assert check_auth([("ann", PASSWORD), ["bob", "x"]]) == [("ann", PASSWORD), ("bob", "x")]
    assert check_auth(("ann", PASSWORD)) == [("ann", PASSWORD)]
    for bad in ([], [("ann",)], [("ann", "")], [("", "x")], "ann:pw", [("ann", 3)]):
        with pytest.raises(UserError, match="auth="):
            check_auth(bad)


def test_limits():
    assert parse_file_size("200mb") == 200 * 1024 ** 2
    assert parse_file_size("1 GB") == 1024 ** 3 and parse_file_size("500") == 500 and parse_file_size(7) == 7
    for bad in ("0", "0mb", "-1", "ten", "5 parsecs", "", True):
        with raises_naming(UserError, "--max-file-size", repr(bad), "200mb", "b, kb, mb, gb, tb"):
            parse_file_size(bad)
    assert check_at_least("--concurrency", 1) == 1
    for bad in (0, -3, 1.5, True):
        with raises_naming(UserError, "--concurrency", repr(bad), ">= 1"):
            check_at_least("--concurrency", bad)


def test_server_files_are_private_and_removed(private_tmp, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", "/somewhere/else")
    neighbour = private_tmp / "not-ours"
    neighbour.mkdir()
    files = ServerFiles().use_for_gradio()
    assert files.root.parent == private_tmp and stat.S_IMODE(files.root.stat().st_mode) == 0o700
    assert files.uploads.is_dir() and files.masks.is_dir() and os.environ["GRADIO_TEMP_DIR"] == str(files.uploads)
    (files.masks / "scan_mask.png").write_bytes(b"png")
    files.remove()
    files.remove()  # twice (close, then the atexit backstop) is harmless
    assert not files.root.exists() and neighbour.is_dir()
    assert os.environ["GRADIO_TEMP_DIR"] == "/somewhere/else"


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert PASSWORD not in captured.err and PASSWORD not in captured.out
    return lines[0]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10"])
def test_cli_refuses_an_open_server_before_loading_a_model(tiny_run, host, no_model_loading, private_tmp, capsys):
    assert main(["serve", str(tiny_run), "--host", host]) == 2
    line = _one_error_line(capsys)
    assert f"--host {host}" in line and "--auth-file FILE" in line and "--auth USER:PASSWORD" in line
    assert "--no-auth" in line
    assert list(private_tmp.iterdir()) == []  # no private folder made for a refused server


def test_cli_refuses_bad_logins_and_limits(tiny_run, tmp_path, no_model_loading, capsys):
    logins = tmp_path / "logins.txt"
    logins.write_text(f"ann:{PASSWORD}\n")
    bad_file = tmp_path / "bad.txt"
    bad_file.write_text(f"# first\nann={PASSWORD.replace(':', '')}\n")
    run = str(tiny_run)
    cases = [
        (["--auth", f"ann:{PASSWORD}", "--auth-file", str(logins)], ["--auth", "--auth-file"]),
        (["--no-auth", "--auth", f"ann:{PASSWORD}"], ["--no-auth", "--auth"]),
        (["--no-auth", "--auth-file", str(logins)], ["--no-auth", "--auth-file"]),
        (["--auth-file", str(bad_file)], [f"{bad_file} line 2", "user:password"]),
        (["--auth-file", str(tmp_path / "missing.txt")], ["missing.txt", "--auth-file"]),
        (["--auth", "ann"], ["--auth expects USER:PASSWORD"]),
        (["--concurrency", "0"], ["--concurrency", ">= 1"]),
        (["--max-queue", "-2"], ["--max-queue", ">= 1"]),
        (["--max-file-size", "0mb"], ["--max-file-size", "positive size"]),
        (["--max-pixels", "0"], ["--max-pixels", ">= 1"]),
    ]
    for flags, expected in cases:
        assert main(["serve", run, "--host", "0.0.0.0", *flags]) == 2, flags
        line = _one_error_line(capsys)
        assert all(text in line for text in expected), (flags, line)


def test_cli_passes_logins_limits_and_trust_to_serve(tiny_run, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(vlsm.serve, "serve", lambda runs, **kwargs: calls.append((runs, kwargs)))
    logins = tmp_path / "logins.txt"
    logins.write_text(f"ann:{PASSWORD}\nbob:pw2\n")
    assert main(["serve", str(tiny_run), "--host", "0.0.0.0", "--auth-file", str(logins), "--concurrency", "3",
                 "--max-queue", "5", "--max-file-size", "10mb", "--trust-checkpoint"]) == 0
    assert main(["serve", str(tiny_run), "--host", "::", "--no-auth"]) == 0
    assert main(["serve", str(tiny_run), "--auth", f"ann:{PASSWORD}"]) == 0
    (_, first), (_, second), (_, third) = calls
    assert first["auth"] == [("ann", PASSWORD), ("bob", "pw2")] and first["allow_open"] is False
    assert (first["concurrency"], first["max_queue"], first["max_file_size"]) == (3, 5, "10mb")
    assert first["trust_checkpoint"] is True and first["host"] == "0.0.0.0"
    assert second["auth"] is None and second["allow_open"] is True and second["trust_checkpoint"] is False
    assert (second["concurrency"], second["max_queue"], second["max_file_size"]) == (1, 16, "200mb")
    assert third["auth"] == [("ann", PASSWORD)] and third["host"] == "127.0.0.1"


def test_python_serve_refuses_an_open_server(tiny_run, no_model_loading, private_tmp):
    with pytest.raises(UserError, match=r"host='0.0.0.0'.*auth=.*allow_open=True"):
        vlsm.serve.serve([tiny_run], host="0.0.0.0")
    with raises_naming(UserError, "concurrency=", "got 0", ">= 1"):
        vlsm.serve.serve([tiny_run], concurrency=0)
    assert list(private_tmp.iterdir()) == []


def test_load_runs_passes_trust_checkpoint(monkeypatch, tmp_path):
    seen = []

    class FakePredictor:
        config = None
        label = "fake"

        def __init__(self, path, **kwargs):
            seen.append(kwargs)

    monkeypatch.setattr(vlsm.serve.session, "Predictor", FakePredictor)
    vlsm.serve.session.load_runs([tmp_path], device="cpu", trust_checkpoint=True)
    vlsm.serve.session.load_runs([tmp_path], device="cpu")
    assert seen == [{"device": "cpu", "trust_checkpoint": True}, {"device": "cpu", "trust_checkpoint": False}]


class Payload:
    """What an attacker pickles into a checkpoint: unpickling it runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cli_refuses_a_payload_checkpoint_unless_trusted(tmp_path, private_tmp, capsys):
    pytest.importorskip("gradio")
    torch = pytest.importorskip("torch")
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.x": torch.zeros(1)}, "hyper_parameters": {"spec": Payload(marker)}}, evil)
    assert main(["serve", str(evil), "--device", "cpu"]) == 2
    line = _one_error_line(capsys)
    assert "evil.ckpt" in line and "--trust-checkpoint" in line
    assert not marker.exists(), "the payload ran"
    assert list(private_tmp.iterdir()) == []  # the refused server's private folder is gone too


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def gradio_imported():
    # imported before tempfile's folder moves: Gradio's import-time defaults are not this test's business
    return pytest.importorskip("gradio")


def test_server_with_login_over_http(tiny_run, gradio_imported, private_tmp, monkeypatch):
    httpx = pytest.importorskip("httpx")
    monkeypatch.setenv("GRADIO_TEMP_DIR", "/before/serve")
    port = _free_port()
    app = vlsm.serve.serve([tiny_run], port=port, device="cpu", examples=0, auth=[("ann", PASSWORD)],
                           max_file_size="1kb", concurrency=2, max_queue=3, prevent_thread_lock=True)
    files = app.server_files
    try:
        assert files.root.parent == private_tmp and stat.S_IMODE(files.root.stat().st_mode) == 0o700
        assert os.environ["GRADIO_TEMP_DIR"] == str(files.uploads)
        assert (app._queue.max_size, app._queue.default_concurrency_limit) == (3, 2)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            # a stranger: nothing but the login page
            for path in ("/config", "/gradio_api/info", f"/gradio_api/file={files.masks}"):
                assert client.get(path).status_code == 401, path
            assert client.post("/gradio_api/upload", files={"files": ("a.png", b"x")}).status_code == 401
            assert client.post("/gradio_api/queue/join", json={}).status_code == 401
            assert client.post("/login", data={"username": "ann", "password": "wrong"}).status_code == 400
            assert client.post("/login", data={"username": "eve", "password": PASSWORD}).status_code == 400
            assert client.get("/config").status_code == 401
            # the right password
            assert client.post("/login", data={"username": "ann", "password": PASSWORD}).status_code == 200
            assert client.get("/config").status_code == 200
            uploaded = client.post("/gradio_api/upload", files={"files": ("a.png", b"x" * 100)})
            [path] = uploaded.json()
            assert os.path.commonpath([path, files.uploads]) == str(files.uploads)
            assert client.post("/gradio_api/upload", files={"files": ("big.png", b"x" * 2048)}).status_code == 413
            # scripted calls cannot skip the queue (and its limits)
            assert client.post("/gradio_api/run/on_segment", json={"data": [None, "", []]}).status_code == 404
    finally:
        app.close()
    assert not files.root.exists() and list(private_tmp.iterdir()) == []
    assert os.environ["GRADIO_TEMP_DIR"] == "/before/serve"
