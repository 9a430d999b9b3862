"""`speechdraw serve` arguments and entry point (the server is speechdraw/serve.py).

    speechdraw serve                                          # http://127.0.0.1:8000/ with the default models
    speechdraw serve --model runs/asr-tiny/release --draw-model runs/draw/release --port 8080 --max-upload-mb 20

Kept apart so that `speechdraw --help` builds every parser without importing torch.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="speech model: name (`speechdraw models list`), release directory, "
                   "archive or URL (default: the default speech model; if it is not installed the page says so and "
                   "only drawing works)")
    p.add_argument("--draw-model", default=None, help="DRAW model: name, release directory, archive or URL "
                   "(default: the default DRAW model; if it is not installed the page says so)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only; "
                                                       "the page has no login, think before binding 0.0.0.0)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port; default: 8000)")
    p.add_argument("--max-upload-mb", type=float, default=100.0,
                   help="largest audio upload accepted, MB (larger ones get 413; default: 100)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--quiet", action="store_true", help="do not log each request on stderr")


def run(args: argparse.Namespace) -> int:
    from speechdraw.engine.release import ReleaseError
    from speechdraw.serve import App, serve

    if not 0 <= args.port <= 65535:
        print(f"speechdraw serve: error: --port {args.port} is not a port number (0-65535)", file=sys.stderr)
        return 2
    if not args.max_upload_mb > 0:
        print(f"speechdraw serve: error: --max-upload-mb must be > 0, got {args.max_upload_mb}", file=sys.stderr)
        return 2
    # A model named on the command line must load; a default that is not installed only disables its half of the page.
    required = tuple(kind for kind, spec in (("asr", args.model), ("draw", args.draw_model)) if spec is not None)
    try:
        app = App.load(args.model, args.draw_model, device=args.device,
                       max_upload_bytes=int(args.max_upload_mb * (1 << 20)), required=required)
    except (ReleaseError, OSError, ValueError) as e:
        print(f"speechdraw serve: error: {e}", file=sys.stderr)
        return 2
    for what, loaded in (("speech", app.asr), ("DRAW", app.draw_model)):
        if loaded.error is not None:
            print(f"speechdraw serve: warning: no {what} model ({loaded.error})", file=sys.stderr)
    try:
        serve(app, args.host, args.port, args.quiet)
    except OSError as e:  # the port is taken, or the address is not this machine's
        app.close()
        print(f"speechdraw serve: error: cannot listen on {args.host}:{args.port} ({e.strerror or e})",
              file=sys.stderr)
        return 2
    return 0
