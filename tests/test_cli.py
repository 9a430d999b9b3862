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
