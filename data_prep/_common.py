"""What every corpus script in data_prep/ does the same way: download and unpack an archive, read audio durations in
parallel (skipping unreadable files with a count instead of stopping), and write one manifest per split with a
one-line summary. Not a script."""

from __future__ import annotations

import shutil
import sys
import tarfile
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from speechdraw.asr.audio import AudioError, AudioInfo, audio_info
from speechdraw.asr.manifest import ManifestEntry, write_manifest

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".sph", ".nist", ".aiff", ".aif", ".au", ".w64")


def download(url: str, dest_dir: Path) -> Path:
    """Fetch `url` into `dest_dir` (kept if already complete: the download goes to *.part and is renamed at the end)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / url.rsplit("/", 1)[-1]
    if target.exists():
        print(f"{target} already downloaded", file=sys.stderr)
        return target
    part = target.with_name(target.name + ".part")
    print(f"downloading {url} -> {target}", file=sys.stderr)
    with urllib.request.urlopen(url) as response, open(part, "wb") as f:
        shutil.copyfileobj(response, f, length=1 << 20)
    part.rename(target)
    return target


def extract(archive: Path, dest_dir: Path) -> None:
    """Unpack a .tar/.tar.gz/.tar.bz2 into `dest_dir`, refusing members that would land outside it."""
    print(f"extracting {archive} -> {dest_dir}", file=sys.stderr)
    with tarfile.open(archive) as tar:
        tar.extractall(dest_dir, filter="data")


def probe(paths: Sequence[Path], jobs: int = 8) -> list[AudioInfo | None]:
    """Header info for each path (None, with a warning, for files that cannot be read); threads, since the time goes
    to file I/O and libsndfile."""

    def one(path: Path) -> AudioInfo | None:
        try:
            return audio_info(path)
        except AudioError as e:
            print(f"warning: skipping {e}", file=sys.stderr)
            return None

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(one, paths))


def write_split(out: Path, entries: Iterable[ManifestEntry], skipped: int = 0) -> int:
    """Write one manifest and say what went into it."""
    entries = list(entries)
    n = write_manifest(out, entries)
    hours = sum(e.duration for e in entries) / 3600
    note = f", {skipped} skipped" if skipped else ""
    print(f"{out}: {n} utterances, {hours:.2f} h{note}")
    return n
