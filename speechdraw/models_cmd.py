"""`speechdraw models`: list, describe, fetch, locate and remove models by name (the work is in speechdraw/models.py).

    speechdraw models list                      # name, kind, size, where installed, headline figure
    speechdraw models info asr-en-synth         # the whole model card (--json: as JSON)
    speechdraw models pull asr-en-synth         # a registry name, a URL (https://, http://, file://) or an archive
    speechdraw models pull https://host/m.tar.gz#sha256=HEX --name mine
    speechdraw models path asr-en-synth         # the release directory (unpacks a shipped archive on first use)
    speechdraw models remove asr-en-synth       # from the user cache

Errors are one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="known and installed models: name, kind, size, installed or not, headline figure")
    info = sub.add_parser("info", help="a model's whole card: data, what it has and has not heard or seen, results")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="print the card as JSON")
    pull = sub.add_parser("pull", help="download (or unpack) a model into the user cache, checking its sha256")
    pull.add_argument("source", metavar="NAME|URL|FILE", help="registry name, archive URL or archive file")
    pull.add_argument("--name", default=None, help="install under this name (default: the archive's card name)")
    pull.add_argument("--sha256", default=None, help="expected sha256 of the archive (default: the registry's, or "
                                                     "a URL's #sha256= fragment; none for other URLs and files)")
    pull.add_argument("--timeout", type=float, default=30.0, help="seconds without data before a try fails "
                                                                  "(default: 30)")
    pull.add_argument("--retries", type=int, default=3, help="further tries, each resuming the download (default: 3)")
    pull.add_argument("--quiet", action="store_true", help="no progress bar")
    path = sub.add_parser("path", help="print a model's release directory")
    path.add_argument("name")
    remove = sub.add_parser("remove", help="delete a model from the user cache")
    remove.add_argument("name")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n else "-"


def run(args: argparse.Namespace) -> int:
    from speechdraw import models

    try:
        if args.models_command == "list":
            rows = models.list_models()
            if not rows:
                print(f"no models known or installed (registry {models.registry_path()}, cache {models.cache_dir()})")
                return 0
            where = {"env": "installed ($SPEECHDRAW_MODELS)", "cache": "installed (cache)",
                     "shipped": "shipped (unpacked on first use)", "url": "not installed (pull)", "": "unavailable"}
            width = max(len(r.name) for r in rows)
            print(f"{'name':<{width}}  kind  {'size':>9}  {'installed':<31}  headline")
            for r in rows:
                print(f"{r.name:<{width}}  {r.kind:<4}  {_size(r.size):>9}  {where[r.where]:<31}  {r.headline}")
        elif args.models_command == "info":
            card = models.card_for(args.name)
            if args.json:
                print(json.dumps(card, indent=2))
            else:
                for key, value in card.items():
                    shown = json.dumps(value, indent=2) if isinstance(value, (dict, list)) else value
                    print(f"{key}: {shown}")
        elif args.models_command == "pull":
            out = models.pull(args.source, name=args.name, sha256=args.sha256, progress=not args.quiet,
                              timeout=args.timeout, retries=args.retries)
            print(f"installed {out.name} ({models.release_kind(out)}) in {out}")
        elif args.models_command == "path":
            print(models.resolve_model(args.name, progress=True))
        elif args.models_command == "remove":
            print(f"removed {models.remove(args.name)}")
    except models.ModelError as e:
        print(f"speechdraw models: error: {e}", file=sys.stderr)
        return 2
    return 0
