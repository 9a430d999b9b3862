"""Subtitles that read well (speechdraw.asr.transcript.make_segments, writers.karaoke): the invariants checked over many
random word sequences and limits (fixed seed), and the reading rules on hand-built cases: a cue ends at a sentence end
and at a long pause, a full cue is split at its longest pause, lines are balanced, word-level highlighting tiles each
cue."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
from test_asr_writers import parse_cues

from speechdraw.asr.transcript import CueLimits, Transcript, Word, make_segments, wrap
from speechdraw.asr.writers import karaoke, segment_words, to_srt, to_vtt

VOCAB = ["a", "I", "the", "river", "runs", "extraordinarily", "fast,", "under", "old", "bridges.", "tonight?",
         "Zebulun", "counterrevolutionaries", "ok!", "and", "so"]


def random_words(rng: np.random.Generator, n: int) -> list[Word]:
    """Words with plausible and implausible timings: pauses of every length, some words touching, a few very long
    (a held note), punctuation that ends sentences."""
    words, t = [], float(rng.uniform(0, 2))
    for _ in range(n):
        w = VOCAB[int(rng.integers(len(VOCAB)))]
        dur = float(rng.choice([0.0, 0.06 * len(w) + 0.05, rng.uniform(0.05, 2.0), rng.uniform(2.0, 9.0)],
                               p=[0.03, 0.8, 0.14, 0.03]))
        words.append(Word(w, round(t, 3), round(t + dur, 3), 0.9))
        gap = rng.choice([0.0, rng.uniform(0, 0.3), rng.uniform(0.3, 1.0), rng.uniform(1.0, 4.0)],
                         p=[0.2, 0.55, 0.15, 0.1])
        t += dur + float(gap)
    return words


def random_limits(rng: np.random.Generator) -> CueLimits:
    return CueLimits(max_chars=int(rng.integers(8, 60)), max_lines=int(rng.integers(1, 4)),
                     max_duration=float(rng.uniform(1.5, 10.0)), max_gap=float(rng.uniform(0.5, 2.0)))


def check_invariants(words: list[Word], duration: float, lim: CueLimits, segs) -> None:
    t = Transcript("x.wav", " ".join(w.word for w in words), words, segs, [], duration)
    # Every word in exactly one cue, in order.
    assert [w for g in segment_words(t) for w in g] == words
    assert sum(len(s.text.split()) for s in segs) == len(words)
    prev_end = 0.0
    for s, g in zip(segs, segment_words(t)):
        assert g and s.text == " ".join(w.word for w in g)
        assert " ".join(s.lines) == s.text
        # No overlap, in order, inside the audio; duration bounded.
        assert prev_end <= s.start <= s.end <= duration
        assert s.end - s.start <= lim.max_duration + 0.0015
        prev_end = s.end
        # Line count and width: only a word longer than the width may exceed it, on a line of its own.
        assert 1 <= len(s.lines) <= lim.max_lines
        assert all(len(line) <= lim.max_chars or " " not in line for line in s.lines), (s.lines, lim.max_chars)
        # The cue's words fit its limits, unless it is a single word.
        if len(g) > 1:
            assert g[-1].end - g[0].start <= lim.max_duration
            # No pause longer than max_gap and no sentence end inside a cue.
            assert all(b.start - a.end <= lim.max_gap for a, b in zip(g, g[1:]))
            assert not any(w.word.endswith((".", "?", "!")) for w in g[:-1])
    # Every long pause and every sentence end closes a cue.
    ends = {id(g[-1]) for g in segment_words(t)}
    for a, b in zip(words, words[1:]):
        if b.start - a.end > lim.max_gap or a.word.endswith((".", "?", "!")):
            assert id(a) in ends


def check_karaoke(t: Transcript) -> None:
    subs = karaoke(t)
    groups = segment_words(t)
    prev = 0.0
    for a, b, _ in subs:
        assert prev <= a <= b  # consecutive, never overlapping
        prev = b
    i = 0
    for s, g in zip(t.segments, groups):
        mine = []
        while i < len(subs) and subs[i][0] < s.end or (i < len(subs) and subs[i][0] == s.start == s.end):
            mine.append(subs[i])
            i += 1
            if mine[-1][1] >= s.end:
                break
        # The sub-cues tile the cue exactly; stripped of the tags they show the cue's lines.
        assert mine and mine[0][0] == s.start and mine[-1][1] == s.end
        assert all(x[1] == y[0] for x, y in zip(mine, mine[1:]))
        assert all([re.sub("</?u>", "", line) for line in lines] == s.lines for _, _, lines in mine)
        # Each word with time on screen is underlined once, in order, while it is spoken.
        underlined = [(a, b, re.findall("<u>([^<]*)</u>", "\n".join(lines))) for a, b, lines in mine]
        marked = [(a, b, u[0]) for a, b, u in underlined if u]
        assert all(len(u) <= 1 for _, _, u in underlined)
        spoken = [w for w in g if min(max(w.end, s.start), s.end) > min(max(w.start, s.start), s.end)]
        assert [m[2] for m in marked] == [w.word for w in spoken]
        for (a, b, _), w in zip(marked, spoken):
            assert w.start - 1e-9 <= a or a == s.start
            assert b <= w.end + 1e-9 or b == s.end
    assert i == len(subs)


def test_invariants_over_random_word_sequences():
    rng = np.random.default_rng(17)
    cues = 0
    for _ in range(250):
        words = random_words(rng, int(rng.integers(0, 60)))
        duration = round((words[-1].end if words else 0.0) + float(rng.uniform(0, 1)), 3)
        lim = random_limits(rng)
        segs = make_segments(words, duration, lim)
        check_invariants(words, duration, lim, segs)
        t = Transcript("x.wav", " ".join(w.word for w in words), words, segs, [], duration)
        check_karaoke(t)
        for vtt, text in ((False, to_srt(t)), (True, to_vtt(t))):
            parsed = parse_cues(text, vtt) if segs else []
            got = [(round(a, 3), round(b, 3), lines) for a, b, lines in parsed]
            assert got == [(s.start, s.end, s.lines) for s in segs]
        cues += len(segs)
    assert cues > 1200


def test_sentence_end_and_long_pause_close_a_cue():
    words = [Word("hello", 0.0, 0.4, 1), Word("there.", 0.5, 0.9, 1), Word("how", 1.0, 1.2, 1),
             Word("are", 1.25, 1.4, 1), Word("you", 3.0, 3.3, 1)]
    segs = make_segments(words, 4.0, CueLimits(max_gap=1.0))
    assert [s.text for s in segs] == ["hello there.", "how are", "you"]


def test_a_full_cue_is_split_at_its_longest_pause():
    """Eight words fill a 30-character cue: the split goes where the speaker paused, not where the width ran out."""
    text = "we went down to the river and then we swam across"
    words, t = [], 0.0
    for w in text.split():
        words.append(Word(w, round(t, 3), round(t + 0.3, 3), 1))
        t += 0.3 + (0.5 if w == "river" else 0.05)
    lim = CueLimits(max_chars=30, max_lines=1, max_gap=1.0)
    segs = make_segments(words, t, lim)
    assert segs[0].text == "we went down to the river"
    greedy = textwrap.wrap(text, 30)[0]
    assert greedy != segs[0].text  # a greedy fill would have cut elsewhere
    # Without a pause long enough, the cue is filled greedily.
    flat = [Word(w.word, i * 0.35, i * 0.35 + 0.3, 1) for i, w in enumerate(words)]
    assert make_segments(flat, 10.0, lim)[0].text == greedy


def test_lines_are_balanced():
    assert textwrap.wrap("the quick brown fox jumps over the lazy dog", 40) == [
        "the quick brown fox jumps over the lazy", "dog"]
    assert wrap("the quick brown fox jumps over the lazy dog", 40) == ["the quick brown fox", "jumps over the lazy dog"]
    assert wrap("short", 40) == ["short"] and wrap("", 10) == [""]
    assert wrap("counterrevolutionaries a", 5) == ["counterrevolutionaries", "a"]


def test_max_cue_seconds_and_limits_are_checked():
    words = [Word(str(i), i * 0.4, i * 0.4 + 0.3, 1) for i in range(40)]
    for secs in (1.0, 2.5, 4.0):
        segs = make_segments(words, 16.5, CueLimits(max_chars=200, max_lines=1, max_duration=secs))
        assert all(s.end - s.start <= secs + 0.0015 for s in segs)
        assert max(s.end - s.start for s in segs) > secs - 0.5  # and cues are filled up to it
    with pytest.raises(ValueError):
        CueLimits(max_chars=0)


def test_highlight_words_in_srt_and_vtt():
    words = [Word("one", 0.5, 0.9, 1), Word("two", 1.0, 1.3, 1), Word("three", 1.3, 1.8, 1)]
    t = Transcript("x.wav", "one two three", words, make_segments(words, 2.0), [], 2.0)
    cues = parse_cues(to_vtt(t, highlight_words=True), vtt=True)
    assert cues == [(0.5, 0.9, ["<u>one</u> two three"]), (0.9, 1.0, ["one two three"]),
                    (1.0, 1.3, ["one <u>two</u> three"]), (1.3, 1.8, ["one two <u>three</u>"])]
    assert parse_cues(to_srt(t, highlight_words=True), vtt=False) == cues
