"""Cut a stream of audio blocks into chunks the acoustic model can take, at silences, in bounded memory.

    for chunk in split_at_silences(stream_audio(path), SegmentConfig()):
        chunk.start, chunk.wave      # first sample (at 16 kHz) in the file, (S,) float32
        chunk.keep                   # (from, to) seconds: the span of the file this chunk's words are taken from

Energy-based voice activity: frame log-energies (10 ms) are compared with a threshold `threshold_db` above the noise
floor (a low quantile of the last `history` seconds of frame energies), or as far below the loud frames (the high
quantile) where that is lower (sound without pauses), and never below `min_db`. A run of at least
`min_silence` silent frames ends a chunk; the chunk keeps `margin` seconds of silence on each side (the model was
trained on utterances with some silence around them), and silence between chunks is never fed to the model. Chunks
never overlap: after a pause shorter than two margins the next chunk starts where the previous one ended, so no sound
is transcribed twice.

A stretch of speech longer than `max_chunk` seconds is split at the longest shorter pause (>= `split_silence`) in its
second half. Where there is no pause at all, windows of `max_chunk` seconds overlap by `overlap` seconds, and each
window keeps only the words whose middle lies on its side of the overlap's centre: a word cut by one window's edge is
whole in the other, and no word is counted twice.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SegmentConfig:
    sample_rate: int = field(default=16_000, metadata={"help": "rate of the samples being cut"})
    frame_ms: float = field(default=10.0, metadata={"help": "energy frame length (ms)"})
    threshold_db: float = field(default=12.0, metadata={"help": "speech is this far above the noise floor (dB)"})
    min_db: float = field(default=-55.0, metadata={"help": "frames below this level (dBFS) are always silence"})
    floor_quantile: float = field(default=0.05, metadata={"help": "noise floor: this quantile of recent frames"})
    history: float = field(default=30.0, metadata={"help": "seconds of frame energies the floor is taken from"})
    min_silence: float = field(default=0.3, metadata={"help": "a pause this long (s) ends a chunk"})
    margin: float = field(default=0.2, metadata={"help": "silence kept on each side of a chunk (s)"})
    max_chunk: float = field(default=20.0, metadata={"help": "longest chunk fed to the model (s)"})
    split_silence: float = field(default=0.05, metadata={"help": "shortest pause a long chunk may be split at (s)"})
    overlap: float = field(default=2.0, metadata={"help": "overlap of windows cut where there is no pause (s)"})

    def __post_init__(self):
        if self.overlap * 2 >= self.max_chunk or self.max_chunk <= 0:
            raise ValueError("need 0 < 2 * overlap < max_chunk")
        if not 0 < self.floor_quantile < 1:
            raise ValueError("floor_quantile must lie in (0, 1)")


@dataclass
class Chunk:
    start: int  # first sample of `wave` in the file
    wave: np.ndarray  # (S,) float32
    keep: tuple[float, float]  # seconds (file time): words whose middle falls outside are dropped
    sample_rate: int = 16_000

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_s(self) -> float:
        return (self.start + len(self.wave)) / self.sample_rate


def frame_db(x: np.ndarray, frame: int) -> np.ndarray:
    """(S,) -> (S // frame,) mean-square level of each whole frame in dBFS (floored at -100)."""
    n = len(x) // frame
    ms = np.square(x[:n * frame].astype(np.float64)).reshape(n, frame).mean(axis=1)
    return 10 * np.log10(np.maximum(ms, 1e-10))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    if not len(mask):
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


class _Splitter:
    def __init__(self, cfg: SegmentConfig):
        self.cfg = cfg
        self.F = int(round(cfg.sample_rate * cfg.frame_ms / 1000))  # samples per frame
        sec = cfg.sample_rate / self.F  # frames per second
        self.min_sil = max(1, round(cfg.min_silence * sec))
        self.margin = round(cfg.margin * sec)
        self.max = round(cfg.max_chunk * sec)
        self.split_sil = max(1, round(cfg.split_silence * sec))
        self.overlap = round(cfg.overlap * sec)
        self.hist: deque[float] = deque(maxlen=max(1, round(cfg.history * sec)))
        self.buf = np.zeros(0, dtype=np.float32)  # samples from self.start (a frame boundary)
        self.db = np.zeros(0)  # level of each whole frame of buf
        self.start = 0
        self.keep_from = 0.0  # seconds: left keep bound of the next chunk (after an overlapped cut)
        self.glued = False  # the next chunk continues an overlapped window: it starts at buf[0]
        self.prev_end = 0  # sample (file) where the last chunk ended: the next one starts no earlier (unless glued)

    def push(self, block: np.ndarray) -> None:
        F = self.F
        tail = len(self.buf) - len(self.db) * F  # samples after the last whole frame
        self.buf = np.concatenate([self.buf, block.astype(np.float32, copy=False)])
        new = frame_db(self.buf[len(self.buf) - tail - len(block):], F) if len(block) + tail >= F else np.zeros(0)
        self.db = np.concatenate([self.db, new])
        self.hist.extend(new.tolist())

    def threshold(self) -> float:
        if not self.hist:
            return self.cfg.min_db
        recent = np.fromiter(self.hist, float)
        floor, loud = np.quantile(recent, [self.cfg.floor_quantile, 1 - self.cfg.floor_quantile])
        # Sound without pauses has no noise floor to measure: its quiet frames are then sound too.
        return max(self.cfg.min_db, min(floor + self.cfg.threshold_db, loud - self.cfg.threshold_db))

    def _drop(self, frames: int) -> None:
        self.buf = self.buf[frames * self.F:]
        self.db = self.db[frames:]
        self.start += frames * self.F

    def _left(self, s: int) -> int:
        """First frame of a chunk whose speech starts at frame s: `margin` frames earlier, but never before the
        previous chunk's end (a pause shorter than two margins is shared, not fed twice), or the buffer's first frame
        when the chunk continues an overlapped window."""
        if self.glued:
            return 0
        return max(0, s - self.margin, (self.prev_end - self.start) // self.F)

    def _chunk(self, a: int, b: int, keep_to: float) -> Chunk:
        """Frames [a, b) of the buffer (b may reach past the whole frames: up to the buffer's end)."""
        sr = self.cfg.sample_rate
        wave = self.buf[a * self.F:min(len(self.buf), b * self.F)].copy()
        c = Chunk(self.start + a * self.F, wave, (self.keep_from, keep_to), sr)
        self.keep_from = 0.0
        self.glued = False
        self.prev_end = c.start + len(wave)
        return c

    def pop(self, final: bool) -> Iterator[Chunk]:
        sr, F = self.cfg.sample_rate, self.F
        while True:
            n = len(self.db)
            silent = self.db < self.threshold()  # (n,)
            if self.glued:
                s = 0
            else:
                speech = np.flatnonzero(~silent)
                if not len(speech):
                    if final:
                        return
                    self._drop(max(0, n - self.margin))  # silence: keep only what the next chunk's margin needs
                    return
                s = int(speech[0])
                if s > self.margin:
                    self._drop(s - self.margin)
                    continue
            # Speech starts at frame s; find the pause that ends it.
            end = None
            for a, b in _runs(silent[s:]):
                if b - a >= self.min_sil:
                    end = s + a
                    break
            if end is not None and end - s <= self.max:
                a = self._left(s)
                yield self._chunk(a, end + self.margin, math.inf)
                self._drop(end)
                continue
            if n - s <= self.max:  # the speech may still end within max_chunk
                if not final:
                    return
                a = self._left(s)
                last = int(np.flatnonzero(~silent)[-1]) + 1 if (~silent).any() else n
                yield self._chunk(a, last + self.margin + 1, math.inf)
                self._drop(n)
                return
            # Longer than max_chunk without a pause of min_silence: split at the longest short pause.
            a = self._left(s)
            lo, hi = a + self.max // 2, a + self.max
            pauses = [(b - p, p, b) for p, b in _runs(silent[lo:hi]) if b - p >= self.split_sil]
            if pauses:
                _, p, b = max(pauses)
                cut = lo + (p + b) // 2
                yield self._chunk(a, cut, math.inf)
                self._drop(cut)
                continue
            # No pause at all: overlapping windows, joined at the middle of the overlap.
            join = (self.start + (hi - self.overlap // 2) * F) / sr
            yield self._chunk(a, hi, join)
            self.keep_from = join
            self._drop(hi - self.overlap)
            self.glued = True


def split_at_silences(blocks: Iterable[np.ndarray], cfg: SegmentConfig | None = None) -> Iterator[Chunk]:
    """Blocks of consecutive samples (any sizes) -> chunks, in order, holding at most about max_chunk + one block of
    audio at a time."""
    sp = _Splitter(cfg or SegmentConfig())
    for block in blocks:
        sp.push(block)
        yield from sp.pop(final=False)
    yield from sp.pop(final=True)
