"""Transcripts as text: txt, json, srt, vtt and tsv.

    WRITERS["srt"](transcript) -> str

txt   the text, one line
json  everything, as transcript.schema.json describes it (schema_version, model, language, decoder, duration, text,
      file confidence, segments with their words nested (start, end, confidence) and a confidence each, the flat word
      list, N-best lists): transcript_json()
srt   SubRip cues (HH:MM:SS,mmm), numbered from 1
vtt   WebVTT cues (HH:MM:SS.mmm) after a WEBVTT header
      (to_srt / to_vtt with highlight_words=True: word-level karaoke, see karaoke())
tsv   one word per row: start, end (seconds), word, confidence, with a header row
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

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


SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).with_name("transcript.schema.json")  # JSON Schema of to_json's output (package data)


def mean_confidence(words: list[Word]) -> float | None:
    """Duration-weighted mean of the words' confidences (a plain mean when they all last 0 s); None without words."""
    if not words:
        return None
    weights = [max(w.end - w.start, 0.0) for w in words]
    if sum(weights) <= 0:
        weights = [1.0] * len(words)
    return round(sum(w.confidence * k for w, k in zip(words, weights)) / sum(weights), 4)


def transcript_json(t: Transcript) -> dict:
    """The JSON document of a transcript, as transcript.schema.json describes it (schema_version SCHEMA_VERSION).

    Confidence, from the CTC posteriors: a word's is the mean, over the output frames that CTC forced alignment of the
    decoded text gives to the word's characters (blank frames between them left out), of the posterior probability of
    the character aligned to each frame (speechdraw.asr.decode.word_alignments). A segment's and the file's are the
    duration-weighted mean of their words' (null without words)."""
    def word(w: Word) -> dict:
        return {"word": w.word, "start": w.start, "end": w.end, "confidence": w.confidence}

    segments = [{"id": i, "start": s.start, "end": s.end, "text": s.text, "lines": s.lines,
                 "confidence": mean_confidence(ws), "words": [word(w) for w in ws]}
                for i, (s, ws) in enumerate(zip(t.segments, segment_words(t)))]
    return {"schema_version": SCHEMA_VERSION, "path": t.path, "model": t.model, "language": t.language,
            "decoder": t.decoder, "duration": t.duration, "error": t.error, "text": t.text,
            "confidence": mean_confidence(t.words), "segments": segments, "words": [word(w) for w in t.words],
            "nbest": [asdict(n) for n in t.nbest]}


def to_json(t: Transcript) -> str:
    return json.dumps(transcript_json(t), indent=2, ensure_ascii=False) + "\n"


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
