"""Cutting audio at silences: chunks hold the sounds with their margins, pauses are never fed to the model, long
stretches are split at short pauses or, with none, in overlapping windows whose keep spans tile the timeline; the
cuts do not depend on the block size the audio arrives in."""

from __future__ import annotations

import numpy as np
import pytest

from speechdraw.asr.segment import SegmentConfig, split_at_silences

SR = 16_000


def bursts(spans: list[tuple[float, float]], seconds: float, seed: int = 0) -> np.ndarray:
    """Noise floor at -60 dBFS with 300 Hz tone bursts (amplitude 0.3) over `spans` seconds."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(int(seconds * SR)) * 1e-3).astype(np.float32)
    for a, b in spans:
        t = np.arange(int(a * SR), int(b * SR))
        x[t] += 0.3 * np.sin(2 * np.pi * 300 * t / SR).astype(np.float32)
    return x


def blocks(x: np.ndarray, seconds: float):
    step = int(seconds * SR)
    return (x[i:i + step] for i in range(0, len(x), step))


def test_chunks_cut_in_pauses_with_margins():
    spans = [(1.0, 2.5), (3.3, 4.0), (6.0, 9.7), (12.0, 12.4)]
    x = bursts(spans, 14.0)
    cfg = SegmentConfig()
    chunks = list(split_at_silences(blocks(x, 1.0), cfg))
    assert len(chunks) == len(spans)
    for c, (a, b) in zip(chunks, spans):
        assert c.start_s == pytest.approx(a - cfg.margin, abs=0.011)
        assert c.end_s == pytest.approx(b + cfg.margin, abs=0.011)
        assert c.keep == (0.0, float("inf"))
        assert np.array_equal(c.wave, x[c.start:c.start + len(c.wave)])
    # The same cuts whatever the block size.
    for size in (0.37, 5.0, 14.0):
        again = list(split_at_silences(blocks(x, size), cfg))
        assert [(c.start, len(c.wave)) for c in again] == [(c.start, len(c.wave)) for c in chunks]


def test_silence_only_gives_no_chunks():
    assert list(split_at_silences(blocks(bursts([], 5.0), 1.0))) == []
    assert list(split_at_silences(blocks(np.zeros(SR * 3, np.float32), 1.0))) == []


def test_long_sound_split_at_short_pause():
    # 30 s of sound with 0.1 s gaps (shorter than min_silence) every 3 s: split at gaps, never longer than max_chunk.
    spans = [(0.5 + 3 * k, 3.4 + 3 * k) for k in range(10)]
    x = bursts(spans, 31.0)
    cfg = SegmentConfig(max_chunk=8.0)
    chunks = list(split_at_silences(blocks(x, 2.0), cfg))
    assert len(chunks) >= 4
    gaps = [b for _, b in spans]
    for c in chunks:
        assert len(c.wave) <= cfg.max_chunk * SR
        assert c.keep == (0.0, float("inf"))
    for prev, nxt in zip(chunks, chunks[1:]):
        cut = prev.end_s
        assert any(g - 0.01 <= cut <= g + 0.11 for g in gaps), cut  # inside one of the short pauses
        assert nxt.start_s >= prev.end_s - 1e-9  # no overlap when there is a pause to cut at


def test_no_pause_at_all_overlapping_windows_tile_the_timeline():
    x = bursts([(0.0, 40.0)], 40.0)
    cfg = SegmentConfig(max_chunk=10.0, overlap=2.0)
    chunks = list(split_at_silences(blocks(x, 3.0), cfg))
    assert len(chunks) == 5
    assert chunks[0].keep[0] == 0.0 and chunks[-1].keep[1] == float("inf")
    for prev, nxt in zip(chunks, chunks[1:]):
        assert len(prev.wave) == cfg.max_chunk * SR
        assert prev.end_s - nxt.start_s == pytest.approx(cfg.overlap)  # windows overlap by `overlap` seconds
        assert prev.keep[1] == nxt.keep[0] == pytest.approx((prev.end_s + nxt.start_s) / 2)  # joined mid-overlap
    assert chunks[-1].end_s == pytest.approx(40.0)


@pytest.mark.parametrize("gap", [0.31, 0.35, 0.39])
def test_pauses_shorter_than_two_margins_are_not_fed_twice(gap):
    """A pause between min_silence (0.3 s) and 2 x margin (0.4 s) ends a chunk, but the margins of the chunks on
    either side would overlap: the next chunk starts where the previous one ends instead, so no sample is fed twice
    and every burst still sits whole in its own chunk."""
    spans, t = [], 1.0
    for length in (1.0, 1.2, 0.6, 1.5):
        spans.append((t, t + length))
        t += length + gap
    x = bursts(spans, t + 1.0)
    cfg = SegmentConfig()
    for size in (0.37, 1.0, 14.0):
        chunks = list(split_at_silences(blocks(x, size), cfg))
        assert len(chunks) == len(spans), [(c.start_s, c.end_s) for c in chunks]
        for c, (a, b) in zip(chunks, spans):
            assert c.start_s <= a and c.end_s >= b  # the burst is whole in its chunk
            assert np.array_equal(c.wave, x[c.start:c.start + len(c.wave)])
        assert chunks[0].start_s == pytest.approx(spans[0][0] - cfg.margin, abs=0.011)
        for prev, nxt, (_, b) in zip(chunks, chunks[1:], spans):
            assert prev.end_s == pytest.approx(b + cfg.margin, abs=0.011)  # the first chunk keeps its whole margin
            assert nxt.start == prev.start + len(prev.wave)  # the next starts exactly where it ends: no overlap
        assert sum(len(c.wave) for c in chunks) == chunks[-1].start + len(chunks[-1].wave) - chunks[0].start
