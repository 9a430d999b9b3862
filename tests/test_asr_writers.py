"""Subtitle segments and the output formats: cue limits, timings monotonic and inside the audio, SRT/VTT/TSV/JSON that
parse back to what was written."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from speechdraw.asr.transcript import CueLimits, Transcript, Word, make_segments
from speechdraw.asr.writers import SCHEMA_PATH, SCHEMA_VERSION, WRITERS, timestamp

CUE = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d):(\d\d):(\d\d)[,.](\d\d\d)")


def parse_cues(text: str, vtt: bool) -> list[tuple[float, float, list[str]]]:
    """SRT or WebVTT -> [(start, end, lines)], checking the block structure on the way."""
    blocks = text.strip("\n").split("\n\n")
    if vtt:
        assert blocks[0] == "WEBVTT"
        blocks = blocks[1:]
    cues = []
    for i, block in enumerate(blocks, 1):
        lines = block.split("\n")
        if not vtt:
            assert lines[0] == str(i)
            lines = lines[1:]
        m = CUE.fullmatch(lines[0])
        assert m, lines[0]
        g = [int(x) for x in m.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        cues.append((start, end, lines[1:]))
    return cues


def check_cues(cues, t: Transcript, limits: CueLimits | None = None) -> None:
    """The invariants every subtitle file must hold."""
    limits = limits or CueLimits()
    assert [" ".join(lines) for _, _, lines in cues] == [s.text for s in t.segments]
    assert " ".join(s.text for s in t.segments) == t.text
    prev_end = 0.0
    for start, end, lines in cues:
        assert prev_end <= start <= end <= t.duration + 0.0005
        assert end - start <= limits.max_duration + 0.001
        assert 1 <= len(lines) <= limits.max_lines
        assert all(len(line) <= limits.max_chars for line in lines)
        prev_end = end


def synthetic_transcript(n: int = 200, seed: int = 0) -> Transcript:
    rng = np.random.default_rng(seed)
    vocab = ["a", "the", "river", "runs", "extraordinarily", "fast", "under", "old", "bridges", "tonight"]
    words, t = [], 0.3
    for _ in range(n):
        w = vocab[int(rng.integers(len(vocab)))]
        dur = 0.08 * len(w) + 0.05
        words.append(Word(w, round(t, 3), round(t + dur, 3), float(rng.uniform(0.5, 1))))
        t += dur + (float(rng.uniform(1.1, 2.5)) if rng.uniform() < 0.1 else float(rng.uniform(0.0, 0.2)))
    duration = round(words[-1].end + 0.01, 3)  # the last cue cannot run past the audio
    return Transcript("x.wav", " ".join(w.word for w in words), words, make_segments(words, duration), [], duration)


def test_segments_hold_limits_and_split_at_pauses():
    t = synthetic_transcript()
    assert len(t.segments) > 10
    check_cues([(s.start, s.end, s.lines) for s in t.segments], t)
    # A pause longer than max_gap always starts a new cue.
    starts = {s.start for s in t.segments}
    for a, b in zip(t.words, t.words[1:]):
        if b.start - a.end > CueLimits().max_gap:
            assert b.start in starts


def test_srt_vtt_tsv_json_parse_back():
    t = synthetic_transcript(seed=1)
    srt = parse_cues(WRITERS["srt"](t), vtt=False)
    vtt = parse_cues(WRITERS["vtt"](t), vtt=True)
    check_cues(srt, t)
    assert srt == vtt
    assert [(a, b) for a, b, _ in srt] == [(s.start, s.end) for s in t.segments]
    rows = WRITERS["tsv"](t).splitlines()
    assert rows[0] == "start\tend\tword\tconfidence" and len(rows) == len(t.words) + 1
    for row, w in zip(rows[1:], t.words):
        start, end, word, conf = row.split("\t")
        assert (float(start), float(end), word) == (w.start, w.end, w.word)
        assert abs(float(conf) - w.confidence) <= 0.0005
    doc = check_json(WRITERS["json"](t))
    assert doc["text"] == t.text and doc["duration"] == t.duration and doc["decoder"] == t.decoder
    assert [(w["word"], w["start"], w["end"], w["confidence"]) for w in doc["words"]] == \
        [(w.word, w.start, w.end, w.confidence) for w in t.words]
    assert WRITERS["txt"](t) == t.text + "\n"


def check_json(text: str) -> dict:
    """A transcript JSON document: valid under the published schema, words nested in the segments that hold them
    (concatenated: the flat list), confidences the duration-weighted means of their words'. Returns it parsed."""
    import jsonschema

    doc = json.loads(text)
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()), cls=jsonschema.Draft202012Validator)
    assert [w for s in doc["segments"] for w in s["words"]] == doc["words"]
    assert [s["id"] for s in doc["segments"]] == list(range(len(doc["segments"])))
    for s in doc["segments"]:
        assert " ".join(w["word"] for w in s["words"]) == s["text"]
    for part in [doc] + doc["segments"]:
        ws = part["words"]
        if not ws:
            assert part["confidence"] is None
            continue
        weights = [w["end"] - w["start"] for w in ws]
        want = sum(w["confidence"] * k for w, k in zip(ws, weights)) / sum(weights)
        assert abs(part["confidence"] - want) <= 5e-5
    return doc


def test_json_schema_document():
    t = synthetic_transcript(seed=2)
    t.model, t.language = "asr-en-synth", "en"
    doc = check_json(WRITERS["json"](t))
    assert doc["schema_version"] == SCHEMA_VERSION == "1.0"
    assert (doc["model"], doc["language"], doc["path"], doc["error"]) == ("asr-en-synth", "en", "x.wav", None)
    assert len(doc["segments"]) == len(t.segments) > 10
    # Confidence: quiet words pull the file's down in proportion to how long they last.
    assert min(w.confidence for w in t.words) < doc["confidence"] < max(w.confidence for w in t.words)
    failed = check_json(WRITERS["json"](Transcript("bad.wav", error="cannot read: not an audio file")))
    assert failed["confidence"] is None and failed["segments"] == [] and failed["error"].startswith("cannot read")
    # The schema is strict: a missing field, a stray one or a confidence out of range is refused.
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    for broken in ({k: v for k, v in doc.items() if k != "language"}, {**doc, "extra": 1},
                   {**doc, "words": [{**doc["words"][0], "confidence": 1.5}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_timestamp_format():
    assert timestamp(0) == "00:00:00,000"
    assert timestamp(3725.4567) == "01:02:05,457"
    assert timestamp(59.9996, ".") == "00:01:00.000"
