"""Releases: what inference loads. A directory, never a pickle.

    <release>/model.pt      plain state dict of tensors (loaded with weights_only=True, strict=True by the caller)
      or model.safetensors  the same in safetensors (released archives: fp16/bf16 stored, fp32 when loaded)
    <release>/config.json   {"format_version", "kind", "model": {...}, "metrics": {...}, "git_commit", "created", ...}
    <release>/<other files> recipe-specific: tokens.txt, feature statistics, LMs, decoder settings...

Every inference command takes one release path.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from speechdraw import __version__
from speechdraw.engine.checkpoint import CheckpointError, atomic_torch_save, safe_load

RELEASE_FORMAT_VERSION = 1


class ReleaseError(RuntimeError):
    pass


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the speechdraw package this process imported


def tree_state(repo: Path = PACKAGE_DIR) -> tuple[str, list[str]]:
    """(HEAD commit, paths that differ from it) of the git work tree at `repo`; ("unknown", [reason]) outside git.

    Untracked files count as differences (an uncommitted module can change what runs); ignored ones (run outputs,
    caches) and records under bench/results/ do not (a record is an output: writing one must not make the next
    benchmark in the same clone refuse).
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=repo)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], capture_output=True,
                                text=True, check=True, cwd=repo)
    except (OSError, subprocess.CalledProcessError) as e:
        return "unknown", [f"not a git work tree ({e})"]
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    return head.stdout.strip(), [p for p in changed if not p.startswith("bench/results/")]


def git_commit() -> str:
    """The commit of the checkout this process imported speechdraw from ("unknown" outside git)."""
    return tree_state()[0]


def code_state() -> dict:
    """Which code this process runs: the imported package's directory, its git commit and the paths that differ from
    that commit (an editable install runs the checkout it points at, whatever the current directory is)."""
    commit, changed = tree_state()
    return {"package": str(PACKAGE_DIR), "git_commit": commit, "dirty": bool(changed), "changed": changed[:50]}


@dataclass
class Release:
    dir: Path
    state_dict: dict[str, torch.Tensor]
    config: dict  # the whole config.json

    @property
    def model_config(self) -> dict:
        return self.config["model"]

    @property
    def metrics(self) -> dict:
        return self.config.get("metrics", {})

    def path(self, name: str) -> Path:
        return self.dir / name


def save_release(out_dir: str | os.PathLike, state_dict: dict, model_config: dict, *, kind: str,
                 metrics: dict | None = None, extra: dict | None = None,
                 extra_files: dict[str, str | bytes] | None = None,
                 copy_files: dict[str, str | os.PathLike] | None = None) -> Path:
    """Write a release directory. `extra_files` maps a file name to its contents (text or bytes); `copy_files` maps a
    file name to a file to copy there. Two arguments, so a text that happens to name an existing file is never copied
    and a mistyped path is never written as text. Names stay inside the release directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in [*(extra_files or {}), *(copy_files or {})]:
        if not (out / name).resolve().is_relative_to(out.resolve()):
            raise ValueError(f"release file name {name!r} would land outside {out}")
    clean = {k.removeprefix("_orig_mod.").removeprefix("module."): v.detach().cpu().contiguous()
             for k, v in state_dict.items()}
    atomic_torch_save(clean, out / "model.pt")
    for name, content in (extra_files or {}).items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif isinstance(content, str):
            target.write_text(content)
        else:
            raise TypeError(f"extra_files[{name!r}] must be text or bytes (copy a file with copy_files), "
                            f"got {type(content).__name__}")
    for name, source in (copy_files or {}).items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not Path(source).is_file():
            raise FileNotFoundError(f"{source}: no such file to copy into the release as {name}")
        if Path(source).resolve() != target.resolve():
            shutil.copyfile(source, target)
    config = {
        "format_version": RELEASE_FORMAT_VERSION,
        "kind": kind,
        "model": model_config,
        "metrics": metrics or {},
        "speechdraw_version": __version__,
        "git_commit": git_commit(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    tmp = out / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, out / "config.json")
    return out


def weights_file(release_dir: str | os.PathLike) -> Path:
    """A release's weights: model.safetensors (released archives) where it has one, else model.pt."""
    d = Path(release_dir)
    return d / "model.safetensors" if (d / "model.safetensors").is_file() else d / "model.pt"


def load_release(path: str | os.PathLike, *, kind: str | None = None, map_location="cpu") -> Release:
    """Read a release directory (or its model.pt / config.json); errors name the path and what is wrong."""
    p = Path(path)
    if p.is_file() and p.name in ("model.pt", "model.safetensors", "config.json"):
        p = p.parent
    if not p.exists():
        raise ReleaseError(f"{p}: no such model (expected a release directory with model.pt and config.json)")
    if not p.is_dir():
        raise ReleaseError(f"{p}: a model is a release directory with model.pt and config.json, not a single file")
    cfg_path = p / "config.json"
    weights_path = weights_file(p)
    for f in (cfg_path, weights_path):
        if not f.is_file():
            raise ReleaseError(f"{p}: not a speechdraw release: {f.name} is missing")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReleaseError(f"{cfg_path}: not valid JSON ({e})") from e
    if config.get("format_version", 0) > RELEASE_FORMAT_VERSION:
        raise ReleaseError(f"{p}: release format {config.get('format_version')} is newer than this speechdraw "
                           f"supports ({RELEASE_FORMAT_VERSION}); upgrade speechdraw")
    if kind is not None and config.get("kind") != kind:
        raise ReleaseError(f"{p}: this is a {config.get('kind')!r} model, but a {kind!r} model is needed")
    state_dict = load_weights(weights_path, map_location=map_location)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ReleaseError(f"{weights_path}: expected a plain state dict of tensors")
    return Release(dir=p, state_dict=state_dict, config=config)


def load_weights(path: Path, map_location="cpu") -> dict:
    """model.pt (torch.load weights-only) or model.safetensors; floating tensors come back as float32 whatever their
    stored precision (released archives store fp16 or bf16)."""
    if path.suffix != ".safetensors":
        try:
            return safe_load(path, map_location=map_location)
        except CheckpointError as e:
            raise ReleaseError(str(e)) from e
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state_dict = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ReleaseError(f"{path}: unreadable or truncated safetensors file ({str(e).splitlines()[0]})") from e
    return {k: (v.float() if v.is_floating_point() else v).to(map_location) for k, v in state_dict.items()}
