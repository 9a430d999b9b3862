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
    model: str = ""  # the acoustic model's name (its card's, else the release directory's)
    language: str = "en"  # the release's language (config.json "language"; English when it names none)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CueLimits:
    max_chars: int = 42  # characters per line (--max-line-width); only a single longer word exceeds it
    max_lines: int = 2  # lines per cue (--max-line-count)
    max_duration: float = 7.0  # seconds on screen (--max-cue-seconds)
    max_gap: float = 1.0  # a longer pause between words starts a new cue
    min_duration: float = 0.5  # a short cue stays up this long when the next one leaves room
    min_split_pause: float = 0.2  # a cue that is full is split at its longest pause if it is at least this long

    def __post_init__(self):
        if self.max_chars < 1 or self.max_lines < 1 or self.max_duration <= 0:
            raise ValueError("max line width, max line count and max cue seconds must be positive")


SENTENCE_END = (".", "?", "!", "…", "。")


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters (a longer word stands alone), balanced: as many lines as a greedy fill
    needs, but as even as possible, so a two-line cue is not one full line over a single word."""
    lines = textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False) or [""]
    lo, hi = max(1, max(len(w) for w in text.split()) if text.split() else 1), width
    while lo < hi:  # the narrowest width that still needs no more lines than the greedy fill
        mid = (lo + hi) // 2
        if len(textwrap.wrap(text, width=mid, break_long_words=False, break_on_hyphens=False)) <= len(lines):
            hi = mid
        else:
            lo = mid + 1
    return textwrap.wrap(text, width=hi, break_long_words=False, break_on_hyphens=False) or [""]


def _fits(words: list[Word], lim: CueLimits) -> bool:
    text = " ".join(w.word for w in words)  # wrap's balancing keeps the greedy line count: count the cheap way
    lines = textwrap.wrap(text, lim.max_chars, break_long_words=False, break_on_hyphens=False)
    return words[-1].end - words[0].start <= lim.max_duration and len(lines) <= lim.max_lines


def _split_point(cur: list[Word], nxt: Word, lim: CueLimits) -> int:
    """Where to end a full cue `cur` that `nxt` does not fit into: after the longest pause (a comma counts as half a
    second of pause) in its second half, if that pause is long enough and the rest still fits with `nxt`; else at
    its end. Reading stops at pauses read better than lines cut wherever the width ran out."""
    best, best_k = lim.min_split_pause, len(cur)
    for k in range((len(cur) + 1) // 2, len(cur)):
        pause = cur[k].start - cur[k - 1].end + (0.5 if cur[k - 1].word.endswith((",", ";", ":")) else 0.0)
        if pause >= best and _fits(cur[k:] + [nxt], lim):
            best, best_k = pause, k
    return best_k


def make_segments(words: list[Word], duration: float, limits: CueLimits | None = None) -> list[Segment]:
    """Group timed words (in order) into subtitle cues: every word in exactly one cue, a new cue after a sentence end
    or a pause longer than max_gap, a full cue split at its longest pause (_split_point); at most max_lines lines of
    max_chars characters (balanced, see wrap) and max_duration seconds; times monotonic and inside [0, duration]."""
    lim = limits or CueLimits()
    groups: list[list[Word]] = []
    cur: list[Word] = []
    for w in words:
        if cur and (cur[-1].word.endswith(SENTENCE_END) or w.start - cur[-1].end > lim.max_gap):
            groups.append(cur)
            cur = []
        elif cur and not _fits(cur + [w], lim):
            k = _split_point(cur, w, lim)
            groups.append(cur[:k])
            cur = cur[k:]
        cur.append(w)
    if cur:
        groups.append(cur)
    segments = []
    for i, g in enumerate(groups):
        start = min(max(0.0, g[0].start), duration)
        if segments:
            start = max(start, segments[-1].end)
        nxt = groups[i + 1][0].start if i + 1 < len(groups) else duration
        end = min(max(g[-1].end, start + min(lim.min_duration, lim.max_duration)), max(nxt, start), duration,
                  start + lim.max_duration)
        end = max(end, start)
        text = " ".join(x.word for x in g)
        segments.append(Segment(round(start, 3), round(end, 3), text, wrap(text, lim.max_chars)))
    return segments
