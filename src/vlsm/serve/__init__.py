"""``vlsm serve``: a Gradio web app that applies trained runs to uploaded or example images.

Optional: needs ``pip install "vlsm-ensemble[serve]"``. :mod:`vlsm.serve.session` holds the logic
(no Gradio), :mod:`vlsm.serve.security` the login, host and limit rules and the private folder,
:mod:`vlsm.serve.app` the page.
"""
from __future__ import annotations

import contextlib
from typing import Optional, Sequence

from vlsm.errors import UserError
from vlsm.serve.session import DEFAULT_EXAMPLES, DEFAULT_MAX_PIXELS

DEFAULT_MAX_FILE_SIZE = "200mb"
DEFAULT_CONCURRENCY = 1
DEFAULT_MAX_QUEUE = 16
AUTH_MESSAGE = "vlsm serve: log in with a user name and password from the server's --auth-file or --auth."


def serve(run_paths: Sequence, *, host: str = "127.0.0.1", port: int = 7860, device: str = "auto",
          examples: int = DEFAULT_EXAMPLES, max_pixels: int = DEFAULT_MAX_PIXELS,
          max_file_size=DEFAULT_MAX_FILE_SIZE, concurrency: int = DEFAULT_CONCURRENCY,
          max_queue: int = DEFAULT_MAX_QUEUE, auth: Optional[Sequence[tuple[str, str]]] = None,
          allow_open: bool = False, trust_checkpoint: bool = False, prevent_thread_lock: bool = False,
          tta: Optional[bool] = None):
    """Load the runs and serve the app at ``http://host:port`` (blocks until interrupted unless
    ``prevent_thread_lock``; then returns the running ``gradio.Blocks``, whose ``close()`` also
    removes the server's private folder).

    ``auth``: ``[(user, password), ...]`` asks for a login. A ``host`` other machines can reach
    (anything but 127.x.x.x, ::1, localhost) is refused without ``auth`` unless ``allow_open``.
    ``concurrency`` segmentations run at once and at most ``max_queue`` wait; uploads over
    ``max_file_size`` (``"200mb"`` or bytes) or ``max_pixels`` are refused. ``trust_checkpoint``
    lets checkpoints that need arbitrary Python objects (pickle) load: only for trusted files. ``tta``:
    test-time augmentation for every run, with its uncertainty shown (None: as each run's eval.tta).
    """
    import os

    from vlsm.serve.security import ServerFiles, check_at_least, check_auth, check_exposure, parse_file_size

    auth = check_auth(auth)
    check_exposure(host, auth, allow_open, python=True)  # before anything slow: a refusal is immediate
    max_bytes = parse_file_size(max_file_size, "max_file_size=")
    for name, value in (("max_pixels=", max_pixels), ("concurrency=", concurrency), ("max_queue=", max_queue)):
        check_at_least(name, value)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version check calls
    files = ServerFiles().use_for_gradio()  # before Gradio builds anything: its upload cache goes there
    try:
        app = _build(run_paths, files, device=device, examples=examples, max_pixels=max_pixels,
                     trust_checkpoint=trust_checkpoint, tta=tta)
        _announce(app, host, port, auth, allow_open)
        _launch(app, files, host=host, port=port, auth=auth, max_bytes=max_bytes, concurrency=concurrency,
                max_queue=max_queue, prevent_thread_lock=prevent_thread_lock)
    except BaseException:
        files.remove()
        raise
    if not prevent_thread_lock:  # stopped (Ctrl+C, SIGTERM): the server's files go with it
        _close(app, files)
    return app


def _build(run_paths, files, *, device, examples, max_pixels, trust_checkpoint, tta=None):
    from vlsm.serve.app import build_app, require_gradio
    from vlsm.serve.session import Segmenter, load_examples, load_runs

    require_gradio()  # before the (slow) model loading
    runs = load_runs(run_paths, device=device, trust_checkpoint=trust_checkpoint, tta=tta)
    app = build_app(runs, load_examples(runs, examples), max_pixels=max_pixels,
                    segmenter=Segmenter(list(runs), out_dir=files.masks))
    app.server_files = files
    return app


def _announce(app, host, port, auth, allow_open) -> None:
    from vlsm.serve.security import is_loopback

    runs = app.segmenter.runs
    print(f"vlsm serve: {len(runs)} run(s): {', '.join(r.label for r in runs)}")
    if auth:
        print(f"vlsm serve: login required ({len(auth)} user(s))")
    elif allow_open and not is_loopback(host):
        print(f"vlsm serve: warning: no login (--no-auth): anyone who can reach {host}:{port} can use this server")
    print(f"vlsm serve: open http://{host}:{port} (Ctrl+C stops)", flush=True)


def _launch(app, files, *, host, port, auth, max_bytes, concurrency, max_queue, prevent_thread_lock) -> None:
    # api_open=False: every call goes through the queue, so its limits hold for scripted clients too
    app.queue(default_concurrency_limit=concurrency, max_size=max_queue, api_open=False)
    try:
        with _sigterm_interrupts(enabled=not prevent_thread_lock):
            app.launch(server_name=host, server_port=port, show_error=True, quiet=True, max_file_size=max_bytes,
                       auth=auth, auth_message=AUTH_MESSAGE if auth else None,
                       allowed_paths=[str(files.masks)], prevent_thread_lock=prevent_thread_lock)
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port} ({err}); pass another --port or stop what uses it") from None
    if prevent_thread_lock:
        original_close = app.close

        def close(verbose: bool = True) -> None:
            try:
                original_close(verbose)
            finally:
                files.remove()

        app.close = close


def _close(app, files) -> None:
    try:
        app.close(verbose=False)
    finally:
        files.remove()


@contextlib.contextmanager
def _sigterm_interrupts(enabled: bool):
    """While a blocking server runs in the main thread, SIGTERM stops it like Ctrl+C (and so its
    private folder is removed) instead of ending the process on the spot."""
    import signal
    import threading

    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["serve", "DEFAULT_MAX_FILE_SIZE", "DEFAULT_CONCURRENCY", "DEFAULT_MAX_QUEUE"]
