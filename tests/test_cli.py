"""The installed entry points answer --help and --version."""

from __future__ import annotations

import subprocess
import sys

from speechdraw import __version__


def test_version_and_help():
    out = subprocess.run([sys.executable, "-m", "speechdraw", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"speechdraw {__version__}"
    out = subprocess.run([sys.executable, "-m", "speechdraw", "--help"], capture_output=True, text=True, check=True)
    assert "usage: speechdraw" in out.stdout


def test_building_every_subcommand_parser_does_not_import_torch():
    code = ("import sys; from speechdraw import cli; p = cli.build_parser(); "
            "names = [n for n, *_ in cli.SUBCOMMANDS]; assert {'transcribe', 'sample'} <= set(names), names; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
