"""Manifests: the one format every corpus is turned into, and the validator that checks one.

A manifest is JSONL, one utterance per line:

    {"audio": "audio/train/train-000001.flac", "duration": 4.21, "text": "and god said", "speaker": "en-us+m3"}
    {"audio": "/data/book.flac", "duration": 9.0, "offset": 61.5, "text": "...", "speaker": "reader7"}

  audio     path; a relative path is relative to the manifest's own directory, so a corpus folder can move
  duration  seconds (of the segment, when offset is given)
  text      normalised transcript (speechdraw.asr.text.normalize), or a space-separated phone string
  speaker   optional
  offset    optional start in seconds, for utterances that are segments of a long file
Any other keys (the synthetic corpus records voice/variant/speed/pitch) are kept in `ManifestEntry.extra` and written
back unchanged.

`read_manifest` is strict (training should not silently skip data); `validate_manifest` is lenient and reports every
problem by line number; `drop_invalid` writes a manifest without the bad lines and says how many went, per reason.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechdraw.asr.audio import AudioError, audio_info, load_audio
from speechdraw.asr.text import TokenSet

CORE_KEYS = ("audio", "duration", "text", "speaker", "offset")


class ManifestError(ValueError):
    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = str(path), line, reason


@dataclass
class ManifestEntry:
    audio: str  # absolute once read; written relative to the manifest's directory when inside it
    duration: float  # seconds
    text: str
    speaker: str | None = None
    offset: float | None = None  # seconds into `audio` where this utterance starts
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, base: Path | None = None) -> str:
        audio = Path(self.audio)
        if base is not None and audio.is_absolute() and audio.is_relative_to(base):
            audio = audio.relative_to(base)
        d: dict[str, Any] = {"audio": audio.as_posix(), "duration": round(float(self.duration), 4), "text": self.text}
        if self.speaker is not None:
            d["speaker"] = self.speaker
        if self.offset is not None:
            d["offset"] = round(float(self.offset), 4)
        d.update(self.extra)
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Path | None = None) -> ManifestEntry:
        """Raises ValueError (with a readable reason) when a field is missing or has the wrong type."""
        if not isinstance(d, dict):
            raise ValueError("line is not a JSON object")
        for key in ("audio", "duration", "text"):
            if key not in d:
                raise ValueError(f"missing field {key!r}")
        if not isinstance(d["audio"], str) or not d["audio"]:
            raise ValueError("'audio' must be a non-empty string")
        if not isinstance(d["text"], str):
            raise ValueError("'text' must be a string")
        for key in ("duration", "offset"):
            if d.get(key) is not None and (isinstance(d[key], bool) or not isinstance(d[key], int | float)):
                raise ValueError(f"{key!r} must be a number")
        audio = Path(d["audio"])
        if base is not None and not audio.is_absolute():
            audio = base / audio
        return cls(
            audio=str(audio),
            duration=float(d["duration"]),
            text=d["text"],
            speaker=None if d.get("speaker") is None else str(d["speaker"]),
            offset=None if d.get("offset") is None else float(d["offset"]),
            extra={k: v for k, v in d.items() if k not in CORE_KEYS},
        )


def _parse(path: Path) -> Iterable[tuple[int, ManifestEntry | None, str]]:
    """(line number, entry or None, error reason) for each non-blank line."""
    base = path.resolve().parent
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, ManifestEntry.from_dict(json.loads(line), base), ""
            except json.JSONDecodeError as e:
                yield number, None, f"not valid JSON ({e.msg})"
            except ValueError as e:
                yield number, None, str(e)


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """All entries, audio paths made absolute; raises ManifestError at the first malformed line."""
    path = Path(path)
    entries = []
    for number, entry, reason in _parse(path):
        if entry is None:
            raise ManifestError(path, number, reason)
        entries.append(entry)
    return entries


def write_manifest(path: str | Path, entries: Iterable[ManifestEntry]) -> int:
    """Write atomically (temp file, then rename: a crash never leaves half a manifest); returns the line count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for entry in entries:
            f.write(entry.to_json(base) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


# ---------------------------------------------------------------------------------------------------------------------
# Validation

# Problem kinds, in the order reports list them.
MALFORMED = "malformed"
MISSING_AUDIO = "missing_audio"
UNREADABLE_AUDIO = "unreadable_audio"
BAD_DURATION = "bad_duration"
EMPTY_TEXT = "empty_text"
BAD_SYMBOLS = "bad_symbols"

# Header durations of compressed files (MP3 encoder delay/padding) differ a little from what the manifest says.
DURATION_TOLERANCE_S = 0.1


@dataclass(frozen=True)
class Issue:
    line: int  # 1-based line number in the manifest
    kind: str
    message: str


@dataclass
class ValidationReport:
    path: str
    lines: int  # non-blank lines read
    issues: list[Issue]
    valid: list[ManifestEntry]  # entries of lines with no issue, in file order

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def bad_lines(self) -> int:
        return len({i.line for i in self.issues})

    def counts(self) -> dict[str, int]:
        return dict(Counter(i.kind for i in self.issues))

    def format(self, limit: int | None = None) -> str:
        shown = self.issues if limit is None else self.issues[:limit]
        out = [f"{self.path}:{i.line}: {i.kind}: {i.message}" for i in shown]
        if limit is not None and len(self.issues) > limit:
            out.append(f"... and {len(self.issues) - limit} more issues")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts().items()))
        summary = f"{self.path}: {self.lines} lines, {self.bad_lines} with problems"
        out.append(summary + (f" ({counts})" if counts else ""))
        return "\n".join(out)


def _audio_issue(entry: ManifestEntry, decode: bool) -> tuple[str, str] | None:
    try:
        info = audio_info(entry.audio)
        if decode:
            load_audio(entry.audio, sample_rate=info.sample_rate, offset=entry.offset or 0.0,
                       duration=entry.duration if entry.offset is not None else None)
    except AudioError as e:
        kind = MISSING_AUDIO if e.reason == "file not found" else UNREADABLE_AUDIO
        return kind, f"{entry.audio}: {e.reason}"
    if entry.duration <= 0:
        return BAD_DURATION, f"duration {entry.duration} is not positive"
    end = (entry.offset or 0.0) + entry.duration
    if entry.offset is not None:
        if end > info.duration + DURATION_TOLERANCE_S:
            return BAD_DURATION, f"segment ends at {end:.3f}s, past the end of the file ({info.duration:.3f}s)"
    elif abs(entry.duration - info.duration) > DURATION_TOLERANCE_S + 0.01 * info.duration:
        return BAD_DURATION, f"duration {entry.duration:.3f}s but the file holds {info.duration:.3f}s"
    return None


def validate_manifest(
    path: str | Path,
    tokens: TokenSet | None = None,
    check_audio: bool = True,
    decode: bool = False,
    jobs: int = 8,
) -> ValidationReport:
    """Check every line: well-formed JSON with the required fields, audio present and readable (header only, or fully
    decoded with `decode`), duration consistent with the file, transcript non-empty and inside `tokens` (default: the
    character set). `jobs` threads open audio files concurrently (the work is I/O and C code)."""
    path = Path(path)
    tokens = tokens if tokens is not None else TokenSet.characters()
    parsed = list(_parse(path))
    issues: list[Issue] = []
    for number, entry, reason in parsed:
        if entry is None:
            issues.append(Issue(number, MALFORMED, reason))
            continue
        if not entry.text.strip():
            issues.append(Issue(number, EMPTY_TEXT, "empty transcript"))
        elif unknown := tokens.unknown(entry.text):
            shown = " ".join(repr(s) for s in unknown[:10])
            issues.append(Issue(number, BAD_SYMBOLS, f"symbols outside the token set: {shown}"))
    if check_audio:
        good = [(n, e) for n, e, _ in parsed if e is not None]
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            audio_issues = pool.map(lambda ne: _audio_issue(ne[1], decode), good)
            for (number, _), found in zip(good, audio_issues):
                if found is not None:
                    issues.append(Issue(number, *found))
    issues.sort(key=lambda i: i.line)
    bad = {i.line for i in issues}
    valid = [e for n, e, _ in parsed if e is not None and n not in bad]
    return ValidationReport(path=str(path), lines=len(parsed), issues=issues, valid=valid)


def drop_invalid(path: str | Path, out: str | Path, **validate_kwargs: Any) -> ValidationReport:
    """Validate `path` and write its valid lines to `out` (which may be `path` itself)."""
    report = validate_manifest(path, **validate_kwargs)
    write_manifest(out, report.valid)
    return report
