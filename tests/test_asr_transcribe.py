"""`speechdraw transcribe` and the Transcriber API on real audio with a really trained model.

The model: the tiny recipe preset trained (once per session) on the ASR test sentences spoken by one espeak-ng voice,
each sentence in eight random amounts of silence (tests/transcribe_fixtures.py), so that it recognises those
sentences wherever they sit in a file. Everything transcribed here is made of the same sentences and voice, so
error rates against the known text are meaningful.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from asr_recipe_fixtures import needs_espeak
from conftest import REPO, run_script, subprocess_env
from test_asr_writers import check_cues, parse_cues
from transcribe_fixtures import SR, long_file, noise

import speechdraw
from speechdraw.asr.audio import resample
from speechdraw.asr.metrics import ErrorRates
from speechdraw.asr.segment import SegmentConfig
from speechdraw.asr.transcribe import Transcriber
from speechdraw.asr.writers import WRITERS

pytestmark = needs_espeak


def cer(ref: str, hyp: str) -> float:
    r = ErrorRates.empty()
    r.add(ref, hyp)
    return r.cer


# pieces (the sentences spoken) and release (the model trained on them): session fixtures in conftest.py, shared with
# test_asr_media.py and test_asr_hotwords.py.


@pytest.fixture(scope="session")
def transcriber(release):
    return Transcriber(release, device="cpu")


def padded(piece, seed: int = 0) -> np.ndarray:
    """A sentence with 0.25 s of noise-floor silence before and after, (S,) at 16 kHz."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.zeros(4000, np.float32), piece.wave, np.zeros(4000, np.float32)])
    return x + noise(len(x), rng)


def test_every_input_case_cli(release, pieces, tmp_path):
    """One directory with every kind of input, good and bad, through the command: the bad ones are named with the
    reason, the good ones transcribed into a mirrored tree, the exit status says that some failed."""
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    p = pieces
    cases = {  # name -> (expected text or None for "no speech", max CER)
        "a/x.wav": (p[0].text, 0.1), "a/x.flac": (p[1].text, 0.1), "b/x.wav": (p[2].text, 0.1),  # shared stems
        "a/x.wav.flac": (p[12].text, 0.1),  # its stem is x.wav: the name a/x.wav's outputs keep
        "pcm24.wav": (p[3].text, 0.1), "float.wav": (p[4].text, 0.1), "stereo48k.wav": (p[5].text, 0.1),
        # 8-bit PCM's quantisation noise: the fixture's tiny model read 0.526 on an AVX2-only EPYC (its weights differ
        # by host: MKL's code path); a misread unsigned byte format gives noise, CER near 1
        "pcm8.wav": (p[6].text, 0.6), "vorbis.ogg": (p[7].text, 0.25), "layer3.mp3": (p[8].text, 0.25),
        "tel8k.wav": (p[9].text, None), "silence.wav": (None, None),
    }
    sf.write(str(src / "a/x.wav"), padded(p[0]), SR, subtype="PCM_16")
    sf.write(str(src / "a/x.flac"), padded(p[1]), SR)
    sf.write(str(src / "a/x.wav.flac"), padded(p[12]), SR)
    sf.write(str(src / "b/x.wav"), padded(p[2]), SR)
    sf.write(str(src / "pcm24.wav"), padded(p[3]), SR, subtype="PCM_24")
    sf.write(str(src / "float.wav"), padded(p[4]), SR, subtype="FLOAT")
    x48 = resample(torch.from_numpy(padded(p[5])), SR, 48_000).numpy()
    sf.write(str(src / "stereo48k.wav"), np.stack([x48, 0.5 * x48], axis=1), 48_000, subtype="PCM_16")
    sf.write(str(src / "pcm8.wav"), padded(p[6]), SR, subtype="PCM_U8")
    sf.write(str(src / "vorbis.ogg"), padded(p[7]), SR, format="OGG", subtype="VORBIS")
    x44 = resample(torch.from_numpy(padded(p[8])), SR, 44_100).numpy()  # MPEG-1 rates: LSF (16 kHz) low-passes
    sf.write(str(src / "layer3.mp3"), x44, 44_100, format="MP3", subtype="MPEG_LAYER_III", compression_level=0)
    sf.write(str(src / "tel8k.wav"), resample(torch.from_numpy(padded(p[9])), SR, 8000).numpy(), 8000)
    sf.write(str(src / "silence.wav"), noise(2 * SR, np.random.default_rng(1)), SR)
    (src / "corrupt.wav").write_bytes(b"RIFF$\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8)
    (src / "empty.wav").write_bytes(b"")
    sf.write(str(src / "nosamples.wav"), np.zeros(0, np.float32), SR)
    (src / "notes.txt").write_text("not audio: directories are searched for audio extensions only\n")

    out = tmp_path / "out"
    proc = run_script(["-m", "speechdraw", "transcribe", str(src), "--model", str(release), "--format", "all",
                       "--output-dir", str(out), "--batch-size", "4"], check=False)
    assert proc.returncode == 1, proc.stderr
    errors = sorted(line for line in proc.stderr.splitlines() if line.startswith("error: "))
    assert errors == [f"error: {src}/corrupt.wav: unreadable audio (Error opening '{src}/corrupt.wav': "
                      f"Error in WAV/W64/RF64 file. Malformed 'fmt ' chunk.)",
                      f"error: {src}/empty.wav: empty file (0 bytes)",
                      f"error: {src}/nosamples.wav: no samples"], proc.stderr
    assert "12 of 15 files transcribed, 3 failed" in proc.stderr
    assert proc.stdout == ""

    written = sorted(str(f.relative_to(out)) for f in out.rglob("*"))
    stems = ["a/x.wav", "a/x.flac", "b/x", "a/x.wav.flac", "pcm24", "float", "stereo48k", "pcm8", "vorbis", "layer3",
             "tel8k", "silence"]
    assert written == sorted(["a", "b"] + [f"{s}.{fmt}" for s in stems for fmt in WRITERS])

    cers = {name: cer(ref, json.loads((out / f"{stem}.json").read_text())["text"])
            for (name, (ref, _)), stem in zip(cases.items(), stems) if ref is not None}
    print("CER per input:", {k: round(v, 3) for k, v in cers.items()})
    for (name, (ref, max_cer)), stem in zip(cases.items(), stems):
        t = json.loads((out / f"{stem}.json").read_text())
        info = sf.info(str(src / name))
        assert t["error"] is None and t["path"] == str(src / name)
        assert abs(t["duration"] - info.frames / info.samplerate) < 1e-3, name
        assert (out / f"{stem}.txt").read_text() == t["text"] + "\n"
        if ref is None:
            assert t["text"] == "" and t["words"] == [] and t["segments"] == [], (name, t["text"])
            assert (out / f"{stem}.srt").read_text() == ""
            continue
        if max_cer is not None:
            assert cer(ref, t["text"]) <= max_cer, (name, ref, t["text"])
        assert [w["word"] for w in t["words"]] == t["text"].split()
        assert all(0 <= w["confidence"] <= 1 for w in t["words"])
        assert len(t["nbest"]) == 1 and t["nbest"][0]["alternatives"][0]["text"] == t["text"]
        transcript = SimpleNamespace(text=t["text"], duration=t["duration"],
                                     segments=[SimpleNamespace(**s) for s in t["segments"]])
        for fmt, vtt in (("srt", False), ("vtt", True)):
            check_cues(parse_cues((out / f"{stem}.{fmt}").read_text(), vtt), transcript)
        rows = (out / f"{stem}.tsv").read_text().splitlines()
        assert [r.split("\t")[2] for r in rows[1:]] == t["text"].split()


def test_stdin_list_stdout_and_exit_status(release, pieces, tmp_path):
    paths = []
    for i in (10, 11):
        paths.append(tmp_path / f"{i}.flac")
        sf.write(str(paths[-1]), padded(pieces[i]), SR)
    proc = subprocess.run([sys.executable, "-m", "speechdraw", "transcribe", "-", "--model", str(release),
                           "--format", "json", "--quiet"], input="\n".join(map(str, paths)) + "\n", cwd=REPO,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # quiet and all good: nothing on stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]  # one JSON object per file
    assert [t["path"] for t in lines] == [str(p) for p in paths]
    for t, i in zip(lines, (10, 11)):
        assert cer(pieces[i].text, t["text"]) <= 0.1


def test_long_file_pieces_timings_and_confidence(transcriber, pieces, tmp_path):
    """Three minutes of sentences between pauses; every fourth has a word's worth of its middle replaced by noise."""
    path = tmp_path / "long.wav"
    placed = long_file(path, pieces, 180.0, seed=1, noise_every=4)
    t = transcriber.transcribe(path)
    assert t.ok and abs(t.duration - 180.0) < 1e-6
    clean, noisy_conf, clean_conf = 0, [], []
    for pl in placed:
        words = [w for w in t.words if pl.start - 0.3 <= (w.start + w.end) / 2 <= pl.end + 0.3]
        hyp = " ".join(w.word for w in words)
        if pl.noise is None:
            clean += 1
            assert hyp and cer(pl.text, hyp) <= 0.10, (pl.start, pl.text, hyp)
            assert abs(words[0].start - pl.start) <= 0.150, (pl.start, pl.text, words[0])
            clean_conf += [w.confidence for w in words]
        else:
            a, b = pl.noise
            noisy_conf += [w.confidence for w in words if w.start < b and w.end > a]
    assert clean >= 60 and len(noisy_conf) >= 10
    assert np.mean(noisy_conf) < np.mean(clean_conf) - 0.04, (np.mean(noisy_conf), np.mean(clean_conf))
    # Timings: monotonic, inside the audio; the subtitles built from them hold the invariants.
    assert all(0 <= w.start <= w.end <= t.duration for w in t.words)
    assert all(a.end <= b.start for a, b in zip(t.words, t.words[1:]))
    for fmt, vtt in (("srt", False), ("vtt", True)):
        check_cues(parse_cues(WRITERS[fmt](t), vtt), t)


def test_overlapping_windows_neither_cut_nor_double_words(release, pieces, tmp_path):
    """Sentences back to back with no pause the segmenter may cut at: every join is an overlapped-window join."""
    path = tmp_path / "run-on.wav"
    placed = long_file(path, pieces, 60.0, seed=2, gap=(0.15, 0.25))
    ref = " ".join(pl.text for pl in placed)
    seg = SegmentConfig(max_chunk=7.0, overlap=2.0, min_silence=5.0, split_silence=5.0)
    t = Transcriber(release, device="cpu", segment=seg).transcribe(path)
    assert len(t.nbest) >= 9  # about 60 / 5 windows
    # The tiny model never heard two sentences in one utterance, so it often writes no space between them ("the
    # mata dog"): compare the letters. A word doubled or cut at one of the ~10 joins would cost 2-7 letters each.
    letters = cer(ref.replace(" ", ""), t.text.replace(" ", ""))
    assert letters <= 0.02, (letters, t.text)
    # Without the join (every window's words kept) the overlaps' words come twice.
    naive = len([w for nb in t.nbest for w in nb.alternatives[0].text.split()])
    assert naive > len(t.text.split()) + 5


def test_memory_does_not_grow_with_the_file(release, pieces, tmp_path):
    """Streaming, measured where it shows: in one process, once the model is loaded and has transcribed 90 s, an hour
    of audio raises the peak RSS by at most 30 MB (the hour as 16-bit samples is 115 MB, as float32 230 MB). The hour
    is mostly pauses, which the segmenter reads and drops without running the model: the test takes seconds."""
    warm, hour = tmp_path / "warm.wav", tmp_path / "hour.wav"
    long_file(warm, pieces, 90.0, seed=3)
    placed = long_file(hour, pieces, 3600.0, seed=4, gap=(40.0, 60.0))
    code = ("import resource, sys, torch; torch.set_num_threads(1); from speechdraw.asr.transcribe import Transcriber; "
            "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "  # KiB on Linux
            "tr = Transcriber(sys.argv[3], device='cpu'); w = tr.transcribe(sys.argv[1]); before = peak(); "
            "t = tr.transcribe(sys.argv[2]); print(before, peak(), w.duration, t.duration, len(t.words))")
    out = run_script(["-c", code, str(warm), str(hour), str(release)], timeout=300).stdout.split()
    before, after = int(out[0]), int(out[1])
    assert float(out[2]) == pytest.approx(90.0) and float(out[3]) == pytest.approx(3600.0)
    assert int(out[4]) >= 0.8 * sum(len(pl.text.split()) for pl in placed)  # the hour really was transcribed
    print(f"peak RSS {before / 1024:.0f} MB after the model and 90 s, +{(after - before) / 1024:.1f} MB for an hour")
    assert after - before <= 30 * 1024, (before, after)


def test_beam_search_with_lm_nbest_and_api(release, pieces, tmp_path):
    from asr_recipe_fixtures import SENTENCES

    from speechdraw.asr.beam import write_lexicon
    from speechdraw.asr.lm.ngram import NGramConfig, train_ngram

    train_ngram(SENTENCES, NGramConfig(order=6, units="char")).write_arpa(tmp_path / "char6.arpa")
    train_ngram(SENTENCES, NGramConfig(order=3)).write_arpa(tmp_path / "word3.arpa")
    write_lexicon(train_ngram(SENTENCES, NGramConfig(order=1)).words(), tmp_path / "lexicon.txt")
    path = tmp_path / "one.wav"
    sf.write(str(path), padded(pieces[12]), SR)

    greedy = speechdraw.transcribe(path, model=release, device="cpu")
    assert isinstance(greedy, speechdraw.asr.transcript.Transcript) and greedy.decoder == "greedy"
    char = speechdraw.transcribe(path, model=release, device="cpu", lm=tmp_path / "char6.arpa", nbest=3)
    assert char.decoder.startswith("beam search") and "char6.arpa" in char.decoder
    alts = char.nbest[0].alternatives
    assert len(alts) == 3 and alts[0].text == char.text
    assert all(a.score >= b.score for a, b in zip(alts, alts[1:]))
    assert all(a.am_score is not None and a.lm_score is not None for a in alts)
    assert cer(pieces[12].text, char.text) <= 0.1
    word = Transcriber(release, device="cpu", lm=tmp_path / "word3.arpa", lexicon=tmp_path / "lexicon.txt",
                       beam=20).transcribe([path, path])
    assert len(word) == 2 and word[0].text == word[1].text == pieces[12].text
    lexicon = {line.split("\t")[0] for line in (tmp_path / "lexicon.txt").read_text().splitlines()}
    assert set(word[0].text.split()) <= lexicon
    # An in-memory waveform gives what its file gives.
    again = Transcriber(release, device="cpu").transcribe_array(sf.read(str(path), dtype="float32")[0], SR)
    assert again.text == greedy.text and again.path is None
    with pytest.raises(ValueError, match="greedy decoding takes no LM"):
        Transcriber(release, device="cpu", greedy=True, lm=tmp_path / "char6.arpa")


def test_lazy_api_does_not_import_torch():
    """`import speechdraw` and the transcribe command's argument parser stay free of torch (fast --help)."""
    code = ("import argparse, sys, speechdraw, speechdraw.asr.transcribe_cmd as cmd; "
            "cmd.add_arguments(argparse.ArgumentParser()); assert 'torch' not in sys.modules, 'torch imported'; "
            "print(speechdraw.transcribe.__module__, 'torch' in sys.modules)")
    assert run_script(["-c", code]).stdout.split() == ["speechdraw.asr.transcribe", "True"]
