"""`vlsm serve`: a web app (Gradio) that segments uploaded or example images with trained runs."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    from vlsm.serve.session import DEFAULT_EXAMPLES, DEFAULT_MAX_PIXELS

    p = sub.add_parser("serve", help="web app: upload an image, give a prompt, compare runs side by side",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", metavar="RUN", nargs="+", help="run folders (or model/ folders, .ckpt files)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface, no login)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES,
                   help="test images offered per dataset of the runs (0: none)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="largest upload accepted, in pixels (width x height)")
    p.set_defaults(func=run)


def run(args) -> int:
    from vlsm.errors import UserError
    from vlsm.serve import serve

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_pixels < 1:
        raise UserError(f"--max-pixels must be positive, got {args.max_pixels}")
    serve(args.runs, host=args.host, port=args.port, device=args.device, examples=args.examples,
          max_pixels=args.max_pixels)
    return 0
