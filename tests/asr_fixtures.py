"""Helpers for the speech tests: real audio files written on the spot, and the data_prep and recipes/asr scripts
imported as modules (they are scripts run from a checkout, not part of the installed package)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DATA_PREP = REPO / "data_prep"


def prep(name: str):
    """Import data_prep/<name>.py the way `python data_prep/<name>.py` sees its siblings (data_prep/ on sys.path)."""
    if str(DATA_PREP) not in sys.path:
        sys.path.insert(0, str(DATA_PREP))
    return importlib.import_module(name)


def recipe(name: str):
    """Import recipes/asr/<name>.py as the module asr_<name>."""
    spec = importlib.util.spec_from_file_location(f"asr_{name}", REPO / "recipes" / "asr" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def chirp(seconds: float, sample_rate: int, f0: float = 200.0, f1: float = 2000.0) -> np.ndarray:
    """A linear sweep at amplitude 0.5, (T,) float32: a real, non-silent signal whose content changes over time."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * max(seconds, 1e-9)))
    return (0.5 * np.sin(phase)).astype(np.float32)


def write_audio(path: Path, seconds: float, sample_rate: int = 16_000, fmt: str | None = None,
                subtype: str | None = None, channels: int = 1) -> np.ndarray:  # fmt: skip
    """Write a chirp (the same one in every channel) and return what was written, (T,) or (T, C)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = chirp(seconds, sample_rate)
    if channels > 1:
        data = np.stack([data] * channels, axis=1)
    sf.write(str(path), data, sample_rate, format=fmt, subtype=subtype)
    return data
