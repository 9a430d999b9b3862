"""What transcription returns: typed results, and the grouping of timed words into subtitle segments.

    t = speechdraw.transcribe("talk.flac", model="runs/asr-tiny/release")
    t.text                          # "the cat sat on the mat ..."
    t.words[0]                      # Word(word='the', start=0.21, end=0.33, confidence=0.97)
    t.segments[0]                   # Segment(start, end, text, lines): one subtitle cue
    t.nbest[0].alternatives[1]      # Alternative(text, score, ...): the runner-up for the first decoded chunk
    t.error                         # None, or why the file could not be transcribed

Subtitle segments follow common caption practice: at most `max_lines` lines of `max_chars` characters, at most
`max_duration` seconds on screen, a new cue after a pause longer than `max_gap`, cues in order and never overlapping,
all inside the audio.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass, field


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the file
    end: float  # seconds
    confidence: float  # mean CTC posterior of the word's aligned frames, in [0, 1]


@dataclass
class Segment:
    """One subtitle cue."""

    start: float  # seconds
    end: float  # seconds
    text: str
    lines: list[str]  # text wrapped to the cue's line-length limit


@dataclass
class Alternative:
    text: str
    score: float  # the decoder's total score (greedy: best-path log-probability; beam: see speechdraw.asr.beam)
    am_score: float | None = None  # emission log-probability of the best path (beam search)
    lm_score: float | None = None  # unweighted log10 n-gram probability (beam search with an LM)
    rescore_lm: float | None = None  # natural-log probability under the rescoring LSTM LM (with --rescore-lm)


@dataclass
class NBest:
    """The N-best list of one decoded chunk of the file (a stretch of speech between pauses), best first."""

    start: float  # seconds
    end: float
    alternatives: list[Alternative]


@dataclass
class Transcript:
    path: str | None  # the input file (None for an in-memory waveform)
    text: str = ""
    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    nbest: list[NBest] = field(default_factory=list)
    duration: float = 0.0  # seconds of audio
    error: str | None = None  # why the file could not be transcribed (then the rest is empty)
    decoder: str = "greedy"  # "greedy" or "beam" (with the LM files used, if any)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CueLimits:
    max_chars: int = 42  # characters per line
    max_lines: int = 2
    max_duration: float = 7.0  # seconds on screen
    max_gap: float = 1.0  # a longer pause between words starts a new cue
    min_duration: float = 0.5  # a short cue stays up this long when the next one leaves room


def wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False) or [""]


def make_segments(words: list[Word], duration: float, limits: CueLimits | None = None) -> list[Segment]:
    """Group timed words (in order) into subtitle cues within the limits; times monotonic and inside [0, duration]."""
    lim = limits or CueLimits()
    groups: list[list[Word]] = []
    for w in words:
        cur = groups[-1] if groups else None
        if cur:
            text = " ".join(x.word for x in cur + [w])
            if (w.start - cur[-1].end > lim.max_gap or w.end - cur[0].start > lim.max_duration
                    or len(wrap(text, lim.max_chars)) > lim.max_lines):
                cur = None
        if cur is None:
            groups.append([w])
        else:
            cur.append(w)
    segments = []
    for i, g in enumerate(groups):
        start = min(max(0.0, g[0].start), duration)
        if segments:
            start = max(start, segments[-1].end)
        nxt = groups[i + 1][0].start if i + 1 < len(groups) else duration
        end = min(max(g[-1].end, start + lim.min_duration), max(nxt, start), duration)
        end = max(end, start)
        text = " ".join(x.word for x in g)
        segments.append(Segment(round(start, 3), round(end, 3), text, wrap(text, lim.max_chars)))
    return segments
