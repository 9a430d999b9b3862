"""What every corpus script in data_prep/ does the same way: download and unpack an archive, read audio durations in
parallel (skipping unreadable files with a count instead of stopping), and write one manifest per split with a
one-line summary. Not a script."""

from __future__ import annotations

import sys
import tarfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from speechdraw.asr.audio import AudioError, AudioInfo, audio_info
from speechdraw.asr.manifest import ManifestEntry, write_manifest
from speechdraw.engine.download import DownloadError
from speechdraw.engine.download import download as verified_download

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".sph", ".nist", ".aiff", ".aif", ".au", ".w64")


def download(url: str, dest_dir: Path, *, md5: str | None = None, sha256: str | None = None,
             timeout: float = 60.0) -> Path:
    """Fetch `url` into `dest_dir` under its own name: checked against the published md5 / sha256, resumed from a
    partial *.part file, and every request bounded by `timeout` seconds (speechdraw.engine.download)."""
    try:
        return verified_download(url, dest_dir / url.rsplit("/", 1)[-1], md5=md5, sha256=sha256, timeout=timeout)
    except DownloadError as e:
        raise SystemExit(f"error: {e}") from e


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
