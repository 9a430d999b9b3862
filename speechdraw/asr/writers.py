"""Transcripts as text: txt, json, srt, vtt and tsv.

    WRITERS["srt"](transcript) -> str

txt   the text, one line
json  everything: text, words with start/end/confidence, subtitle segments, N-best lists, duration, decoder
srt   SubRip cues (HH:MM:SS,mmm), numbered from 1
vtt   WebVTT cues (HH:MM:SS.mmm) after a WEBVTT header
      (to_srt / to_vtt with highlight_words=True: word-level karaoke, see karaoke())
tsv   one word per row: start, end (seconds), word, confidence, with a header row
"""

from __future__ import annotations

import json
from collections.abc import Callable

from speechdraw.asr.transcript import Transcript, Word

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


def segment_words(t: Transcript) -> list[list[Word]]:
    """Each cue's words: cues hold consecutive words, every word in exactly one cue (make_segments), in order."""
    out, i = [], 0
    for s in t.segments:
        n = len(s.text.split())
        out.append(t.words[i:i + n])
        i += n
    return out


def karaoke(t: Transcript) -> list[tuple[float, float, list[str]]]:
    """Word-level highlighting as whisper's --highlight_words writes it: each cue becomes consecutive sub-cues, one
    per word while it is spoken (that word underlined, <u>word</u>, in the cue's lines) and the plain lines in the
    gaps between words; the sub-cues tile the cue's time span exactly and never overlap."""
    out: list[tuple[float, float, list[str]]] = []
    for s, words in zip(t.segments, segment_words(t)):
        prev, first = s.start, len(out)
        for i, w in enumerate(words):
            start = min(max(w.start, prev), s.end)
            end = min(max(w.end, start), s.end)
            if start > prev:
                out.append((prev, start, s.lines))
            if end > start:
                out.append((start, end, _underline(s.lines, i)))
            prev = max(prev, end)
        if s.end > prev or len(out) == first:  # the tail after the last word (or a cue squeezed to no time)
            out.append((prev, s.end, s.lines))
    return out


def _underline(lines: list[str], index: int) -> list[str]:
    """`lines` with word number `index` (counting across lines) written <u>word</u>."""
    out, n = [], 0
    for line in lines:
        words = line.split(" ")
        out.append(" ".join(f"<u>{w}</u>" if n + j == index else w for j, w in enumerate(words)))
        n += len(words)
    return out


def _cues(t: Transcript, highlight_words: bool) -> list[tuple[float, float, list[str]]]:
    return karaoke(t) if highlight_words else [(s.start, s.end, s.lines) for s in t.segments]


def to_srt(t: Transcript, highlight_words: bool = False) -> str:
    cues = [f"{i}\n{timestamp(a)} --> {timestamp(b)}\n" + "\n".join(lines) + "\n"
            for i, (a, b, lines) in enumerate(_cues(t, highlight_words), 1)]
    return "\n".join(cues)


def to_vtt(t: Transcript, highlight_words: bool = False) -> str:
    cues = [f"{timestamp(a, '.')} --> {timestamp(b, '.')}\n" + "\n".join(lines) + "\n"
            for a, b, lines in _cues(t, highlight_words)]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_tsv(t: Transcript) -> str:
    rows = ["start\tend\tword\tconfidence"]
    rows += [f"{w.start:.3f}\t{w.end:.3f}\t{w.word}\t{w.confidence:.3f}" for w in t.words]
    return "\n".join(rows) + "\n"


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt, "tsv": to_tsv}
