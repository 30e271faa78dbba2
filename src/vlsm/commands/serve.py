"""`vlsm serve`: a web app (Gradio) that segments uploaded or example images with trained runs."""
from __future__ import annotations

import argparse

from vlsm.commands._common import add_trust_arg
from vlsm.config.flags import add_option_flags, option_values


def register(sub) -> None:
    from vlsm.serve import DEFAULT_CONCURRENCY, DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_QUEUE
    from vlsm.serve.session import DEFAULT_EXAMPLES, DEFAULT_MAX_PIXELS

    p = sub.add_parser("serve", help="web app: upload an image, give a prompt, compare runs side by side",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", metavar="RUN", nargs="+", help="run folders (or model/ folders, .ckpt files)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback (127.x.x.x, ::1, localhost), e.g. 0.0.0.0, "
                        "needs --auth-file/--auth or --no-auth")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_option_flags(p, ["eval.tta"], defaults=False)  # (not given: each run's own; with TTA the page shows the uncertainty)
    p.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES,
                   help="test images offered per dataset of the runs (0: none)")
    login = p.add_argument_group("login")
    login.add_argument("--auth-file", metavar="FILE",
                       help="ask for a login: FILE holds one user:password a line (blank lines and # comments "
                            "ignored); keeps the password out of the shell history and the process list")
    login.add_argument("--auth", metavar="USER:PASSWORD",
                       help="ask for a login with this one user (the password is then visible in the shell history "
                            "and the process list: prefer --auth-file)")
    login.add_argument("--no-auth", action="store_true",
                       help="serve beyond loopback without a login, on purpose (anyone who reaches the port can use it)")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="largest upload accepted, in pixels (width x height)")
    limits.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE,
                        help="largest upload accepted (e.g. 500kb, 200mb, 1gb; a bare number is bytes)")
    limits.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="segmentations run at once (the others wait in the queue)")
    limits.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE,
                        help="requests that may wait in the queue; more are turned away with a 'queue is full' message")
    add_trust_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from vlsm.errors import UserError
    from vlsm.serve import serve
    from vlsm.serve.security import (
        auth_file_warning,
        check_at_least,
        check_exposure,
        parse_credentials,
        parse_file_size,
        read_auth_file,
    )

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    check_at_least("--max-pixels", args.max_pixels)
    parse_file_size(args.max_file_size)
    check_at_least("--concurrency", args.concurrency)
    check_at_least("--max-queue", args.max_queue)
    if args.auth is not None and args.auth_file is not None:
        raise UserError("--auth and --auth-file both give logins: pass one of them (--auth-file keeps the password "
                        "out of the shell history)")
    if args.no_auth and (args.auth is not None or args.auth_file is not None):
        raise UserError(f"--no-auth serves an open page, {'--auth' if args.auth is not None else '--auth-file'} "
                        f"asks for a login: pass one of them")
    auth = (read_auth_file(args.auth_file) if args.auth_file is not None
            else [parse_credentials(args.auth)] if args.auth is not None else None)
    check_exposure(args.host, auth, args.no_auth)
    warning = auth_file_warning(args.auth_file) if args.auth_file is not None else None
    if warning:
        print(f"vlsm serve: {warning}", flush=True)
    serve(args.runs, host=args.host, port=args.port, device=args.device, examples=args.examples,
          max_pixels=args.max_pixels, max_file_size=args.max_file_size, concurrency=args.concurrency,
          max_queue=args.max_queue, auth=auth, allow_open=args.no_auth, trust_checkpoint=args.trust_checkpoint,
          tta=option_values(args, ["eval.tta"]).get("eval.tta"))
    return 0
