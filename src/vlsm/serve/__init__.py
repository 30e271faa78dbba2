"""``vlsm serve``: a Gradio web app that applies trained runs to uploaded or example images.

Optional: needs ``pip install "vlsm-ensemble[serve]"``. :mod:`vlsm.serve.session` holds the logic
(no Gradio), :mod:`vlsm.serve.app` the page.
"""
from __future__ import annotations

from typing import Sequence

from vlsm.errors import UserError
from vlsm.serve.session import DEFAULT_EXAMPLES, DEFAULT_MAX_PIXELS


def serve(run_paths: Sequence, *, host: str = "127.0.0.1", port: int = 7860, device: str = "auto",
          examples: int = DEFAULT_EXAMPLES, max_pixels: int = DEFAULT_MAX_PIXELS, max_file_size: str = "200mb",
          prevent_thread_lock: bool = False):
    """Load the runs and serve the app at ``http://host:port`` (blocks until interrupted unless
    ``prevent_thread_lock``; then returns the running ``gradio.Blocks``)."""
    import os

    from vlsm.serve.app import build_app, require_gradio
    from vlsm.serve.session import load_examples, load_runs

    require_gradio()  # before the (slow) model loading
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version check calls
    runs = load_runs(run_paths, device=device)
    app = build_app(runs, load_examples(runs, examples), max_pixels=max_pixels)
    print(f"vlsm serve: {len(runs)} run(s): {', '.join(r.label for r in runs)}")
    print(f"vlsm serve: open http://{host}:{port} (Ctrl+C stops)", flush=True)
    try:
        app.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=port, show_error=True, quiet=True, max_file_size=max_file_size,
            allowed_paths=[str(app.segmenter.out_dir)], prevent_thread_lock=prevent_thread_lock)
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port} ({err}); pass another --port or stop what uses it") from None
    return app


__all__ = ["serve"]
