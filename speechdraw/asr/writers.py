"""Transcripts as text: txt, json, srt, vtt and tsv.

    WRITERS["srt"](transcript) -> str

txt   the text, one line
json  everything: text, words with start/end/confidence, subtitle segments, N-best lists, duration, decoder
srt   SubRip cues (HH:MM:SS,mmm), numbered from 1
vtt   WebVTT cues (HH:MM:SS.mmm) after a WEBVTT header
tsv   one word per row: start, end (seconds), word, confidence, with a header row
"""

from __future__ import annotations

import json
from collections.abc import Callable

from speechdraw.asr.transcript import Transcript

FORMATS = ("txt", "json", "srt", "vtt", "tsv")


def timestamp(seconds: float, sep: str = ",") -> str:
    """Seconds -> HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (VTT, sep=".")."""
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_txt(t: Transcript) -> str:
    return t.text + "\n"


def to_json(t: Transcript) -> str:
    return json.dumps(t.to_dict(), indent=2, ensure_ascii=False) + "\n"


def to_srt(t: Transcript) -> str:
    cues = [f"{i}\n{timestamp(s.start)} --> {timestamp(s.end)}\n" + "\n".join(s.lines) + "\n"
            for i, s in enumerate(t.segments, 1)]
    return "\n".join(cues)


def to_vtt(t: Transcript) -> str:
    cues = [f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n" + "\n".join(s.lines) + "\n"
            for s in t.segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_tsv(t: Transcript) -> str:
    rows = ["start\tend\tword\tconfidence"]
    rows += [f"{w.start:.3f}\t{w.end:.3f}\t{w.word}\t{w.confidence:.3f}" for w in t.words]
    return "\n".join(rows) + "\n"


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt, "tsv": to_tsv}
