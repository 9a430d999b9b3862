"""Verified, resumable downloads with a timeout: what data_prep/ and draw.data.download_mnist fetch corpora with.

    download(url, target, md5=..., timeout=60)

The bytes go to `<target>.part`; an interrupted download is continued with an HTTP Range request when the server
honours it (206 Partial Content) and restarted otherwise. Every connect and read waits at most `timeout` seconds, so a
stalled server ends in a one-line DownloadError instead of a hang. The finished file is checked against its published
md5 or sha256 before it is renamed to `target`; a mismatch deletes it, so nothing wrong is ever kept as complete.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


class DownloadError(RuntimeError):
    pass


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, url: str, md5: str | None, sha256: str | None) -> None:
    for algorithm, want in (("md5", md5), ("sha256", sha256)):
        if want:
            got = file_digest(path, algorithm)
            if got != want.lower():
                raise DownloadError(f"{url}: {algorithm} {got}, expected {want}")


def download(url: str, target: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None,
             timeout: float = 60.0) -> Path:
    """Fetch `url` into `target` and return it. A target already present is checked (when a checksum is given) and
    kept; a partial `<target>.part` from an earlier attempt is resumed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        try:
            _check(target, url, md5, sha256)
        except DownloadError as e:
            raise DownloadError(f"{target} is already there but does not match ({e}): delete it and run again") from e
        print(f"{target} already downloaded", file=sys.stderr)
        return target
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    print(f"downloading {url} -> {target}" + (f" (resuming at {have} bytes)" if have else ""), file=sys.stderr)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = have and response.status == 206  # a server that ignores Range sends the whole file (200)
            with open(part, "ab" if resumed else "wb") as f:
                for block in iter(lambda: response.read1(1 << 20), b""):  # what has arrived: kept on a stall
                    f.write(block)
    except urllib.error.HTTPError as e:
        if not (e.code == 416 and have):  # 416: nothing left to send, the partial file is already whole
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (TimeoutError, urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        why = f"no data for {timeout:g} s (timed out)" if isinstance(reason, TimeoutError) else str(reason)
        kept = f"; {part.stat().st_size} bytes kept in {part.name}, run again to resume" if part.exists() else ""
        raise DownloadError(f"{url}: {why}{kept}") from e
    try:
        _check(part, url, md5, sha256)
    except DownloadError as e:
        part.unlink()
        raise DownloadError(f"{e}; the download was deleted") from e
    os.replace(part, target)
    return target
