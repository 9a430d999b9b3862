"""Resume checkpoints: written atomically, found again after a crash, loaded without unpickling code.

A checkpoint is one file `ckpt-<step>.pt` holding plain state dicts (model, optimizer, scheduler, scaler, EMA), the
loop position (step, epoch, batch within the epoch), every rank's RNG states, the resolved config and a format version.
Everything in it is a tensor or a plain container, so `torch.load(..., weights_only=True)` reads it: a file that needs
arbitrary unpickling is refused.

Writes go to `<name>.tmp`, are fsynced, then renamed over the target (POSIX rename is atomic), and the directory is
fsynced, so a crash at any instant leaves either the old file or the new one, never half of one. Setting the
environment variable SPEECHDRAW_FAULT=before_rename kills the process between the write and the rename (for tests).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

FORMAT_VERSION = 1
_CKPT_RE = re.compile(r"^ckpt-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file, fsync, rename over `path`, fsync the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("SPEECHDRAW_FAULT") == "before_rename":
        os._exit(86)  # simulated crash: the temporary file is complete, the rename never happens
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def safe_load(path: str | os.PathLike, map_location="cpu"):
    """torch.load with weights_only=True; raises CheckpointError saying why a file was refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one loses its central directory
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint (not a complete torch zip archive)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        raise CheckpointError(
            f"{path}: refused to load: it contains pickled Python objects other than tensors and plain containers, "
            f"and speechdraw loads checkpoints with weights_only=True so that opening a file cannot run code. "
            f"It was not written by speechdraw, or was modified. ({(lines or ['weights-only unpickler error'])[0]})"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({str(e).splitlines()[0]})") from e


def load_checkpoint(path: str | os.PathLike) -> dict:
    state = safe_load(path)
    if not isinstance(state, dict) or "format_version" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a speechdraw resume checkpoint (no format_version/model entries)")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {state['format_version']} is newer than this speechdraw "
                              f"({FORMAT_VERSION}); upgrade speechdraw")
    return state


class CheckpointManager:
    """Keeps `ckpt-<step>.pt` files in `directory`: the last `keep_last`, plus `best.pt`."""

    def __init__(self, directory: str | os.PathLike, keep_last: int = 3):
        self.dir = Path(directory)
        self.keep_last = keep_last

    def list(self) -> list[tuple[int, Path]]:
        """(step, path) of complete checkpoint files, newest first (temporary files are never listed)."""
        if not self.dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _CKPT_RE.match(p.name))]
        return sorted(found, reverse=True)

    def save(self, state: dict, step: int, *, is_best: bool = False) -> Path:
        state = {"format_version": FORMAT_VERSION, **state}
        path = atomic_torch_save(state, self.dir / f"ckpt-{step:09d}.pt")
        if is_best:
            # Hard link under a temporary name, then rename: best.pt is replaced atomically without a second write.
            tmp = self.dir / "best.pt.tmp"
            tmp.unlink(missing_ok=True)
            try:
                os.link(path, tmp)
            except OSError:
                atomic_torch_save(state, tmp)  # file systems without hard links
            os.replace(tmp, self.dir / "best.pt")
            _fsync_dir(self.dir)
        for _, old in self.list()[self.keep_last:]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> tuple[Path, dict] | None:
        """The newest checkpoint that loads; corrupt or truncated ones are skipped with a warning."""
        for _, path in self.list():
            try:
                return path, load_checkpoint(path)
            except CheckpointError as e:
                warnings.warn(f"skipping checkpoint: {e}", stacklevel=2)
        return None


def resolve_resume(resume: str, manager: CheckpointManager) -> tuple[Path, dict] | None:
    """`--resume` semantics: "" = start fresh, "auto" = newest complete checkpoint if any, else a path."""
    if not resume:
        return None
    if resume == "auto":
        return manager.load_latest()
    return Path(resume), load_checkpoint(resume)
