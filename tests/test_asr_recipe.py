"""The ASR recipe end to end in real processes: speak two dozen sentences with espeak-ng, train the `tiny` preset until
it fits them, export a release, reload it weights-only and get the same greedy output from the library, evaluate.py
and a second export."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from asr_recipe_fixtures import needs_espeak, speak_corpus
from conftest import read_metrics, run_script

from speechdraw.asr.audio import load_audio
from speechdraw.asr.manifest import read_manifest
from speechdraw.asr.metrics import ErrorRates
from speechdraw.asr.release import load_speech_release
from speechdraw.engine.checkpoint import safe_load

# Every waveform augmentation at probability 1 (phone and codec share one draw), a small RIR bank and babble pool.
AUGMENT_ALL = ["--augment.pitch_prob", "1", "--augment.reverb_prob", "1", "--augment.rir_bank", "4",
               "--augment.noise_prob", "1", "--augment.noise_kinds", "babble,pink,hum", "--augment.babble_pool", "6",
               "--augment.eq_prob", "1", "--augment.phone_prob", "0.5", "--augment.codec_prob", "0.5",
               "--augment.gain_prob", "1", "--augment.clip_prob", "1", "--augment.dc_prob", "1",
               "--train.num_workers", "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return speak_corpus(tmp_path_factory.mktemp("corpus"))


@needs_espeak
def test_tiny_recipe_fits_exports_and_reloads(tmp_path, corpus):
    manifest = corpus
    run = tmp_path / "run"
    proc = run_script(["recipes/asr/train.py", "--preset", "tiny", "--data.train", str(manifest),
                       "--data.dev", str(manifest), "--train.run_dir", str(run)], timeout=400)
    assert "kept 24 utterances, removed 0" in proc.stderr
    val = read_metrics(run, "val")
    assert len(val) == 60 and val[-1]["cer"] <= 0.10, val[-1]
    assert val[0]["cer"] > 0.5  # it learned: the first epoch was far from fitting
    train = read_metrics(run, "train")
    assert train[-1]["loss"] < train[0]["loss"] / 5

    # The release written at the end of training: the files inference needs, loaded weights-only and strict.
    release = run / "release"
    assert {p.name for p in release.iterdir()} >= {"model.pt", "config.json", "tokens.txt", "feature_stats.json"}
    assert (release / "tokens.txt").read_text().splitlines()[:3] == ["|", "'", "a"]
    assert set(safe_load(release / "model.pt")) == set(load_speech_release(release).model.state_dict())
    asr = load_speech_release(release)
    entries = read_manifest(manifest)
    waves = [load_audio(e.audio) for e in entries]
    hyps = asr.transcribe_batch(waves, word_timings=True)
    rates = ErrorRates.empty()
    for e, h in zip(entries, hyps):
        rates.add(e.text, h.text)
    assert rates.cer <= 0.10
    best_cer = min(r["cer"] for r in val)
    assert abs(rates.cer - best_cer) < 1e-9  # the release holds the best checkpoint's weights
    # Word timings: in order, inside the audio, and as many words as the hypothesis has.
    for e, h in zip(entries, hyps):
        assert [w.word for w in h.words] == h.text.split()
        assert all(0 <= w.start < w.end <= e.duration + 0.05 for w in h.words)
        assert all(a.end <= b.start for a, b in zip(h.words, h.words[1:]))

    # One utterance alone gives the same hypothesis as in the batch (padding does not leak).
    assert asr.transcribe_batch(waves[3:4])[0].text == hyps[3].text

    # evaluate.py on the release prints the table and writes JSON with the same hypotheses.
    out_json = tmp_path / "eval.json"
    proc = run_script(["recipes/asr/evaluate.py", "--model", str(release), "--manifest", str(manifest),
                       "--json", str(out_json), "--per-utt"])
    assert "train.jsonl" in proc.stdout and "CER %" in proc.stdout
    result = json.loads(out_json.read_text())["results"][0]
    assert [u["hyp"] for u in result["per_utterance"]] == [h.text for h in hyps]
    assert abs(result["cer"] - rates.cer) < 1e-9 and result["utterances"] == 24

    # export.py from the same checkpoint writes an identical model.
    again = tmp_path / "again"
    run_script(["recipes/asr/export.py", "--run", str(run), "--out", str(again)])
    a, b = safe_load(release / "model.pt"), safe_load(again / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_speech_release(again).transcribe_batch(waves[:5])[0].text == hyps[0].text


@needs_espeak
def test_resume_mid_run_repeats_the_same_losses(tmp_path, corpus):
    """Stop after 3 steps, resume to 7: the losses equal an uninterrupted 7-step run (SpecAugment, speed perturbation,
    VTLP and every waveform augmentation on, in a DataLoader worker, so the restored RNG state and the per-utterance
    augmentation seeds matter; the run crosses an epoch boundary with its validation and checkpoint)."""
    common = ["recipes/asr/train.py", "--preset", "tiny", "--data.train", str(corpus), "--data.dev", str(corpus),
              "--data.max_dev_utts", "4", "--features.freq_masks", "2", "--features.time_masks", "2",
              "--features.speed_factors", "0.9,1.0,1.1", "--features.vtlp_range", "0.1",
              *AUGMENT_ALL, "--train.epochs", "3", "--train.log_every", "1"]
    run_script([*common, "--train.run_dir", str(tmp_path / "a"), "--train.max_steps", "7"])
    run_script([*common, "--train.run_dir", str(tmp_path / "b"), "--train.max_steps", "3"])
    proc = run_script([*common, "--train.run_dir", str(tmp_path / "b"), "--train.max_steps", "7",
                       "--train.resume", "auto"])
    assert "resumed from" in proc.stderr and "at step 3" in proc.stderr
    a = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "a")]
    b = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "b")]
    assert len(a) == 7 and a == b
    assert read_metrics(tmp_path / "a", "val")[0]["epoch"] == 0  # an epoch ended inside the 7 steps
    # Training speed is logged from the first window on, in a fresh run and right after a resume.
    speeds = [r["audio_per_second"] for r in read_metrics(tmp_path / "a") + read_metrics(tmp_path / "b")]
    assert all(math.isfinite(v) and v > 0 for v in speeds), speeds


@needs_espeak
def test_an_utterance_too_short_for_its_transcript_is_counted_in_the_metrics(tmp_path, corpus):
    """A manifest line that overstates its audio (0.15 s of sound claimed as 3 s, with a long transcript) passes the
    duration-based filter, but CTC cannot align it: each epoch it is counted in metrics.jsonl and left out of the loss
    normaliser instead of silently zeroed."""
    import soundfile as sf

    from speechdraw.asr.manifest import ManifestEntry, write_manifest

    entries = read_manifest(corpus)
    wave, sr = sf.read(entries[0].audio)
    short = tmp_path / "short.flac"
    sf.write(str(short), wave[: int(0.15 * sr)], sr)
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, [*entries, ManifestEntry(str(short), 3.0, "a transcript far too long for its audio")])
    run = tmp_path / "run"
    proc = run_script(["recipes/asr/train.py", "--preset", "tiny", "--data.train", str(manifest), "--data.dev",
                       str(corpus), "--data.max_dev_utts", "2", "--train.epochs", "2", "--train.log_every", "1",
                       "--train.run_dir", str(run)])
    assert "kept 25 utterances, removed 0" in proc.stderr
    rows = read_metrics(run)
    assert rows[-1]["unalignable"] == 2  # once per epoch
    assert "utterances CTC could not align 2" in proc.stderr


@needs_espeak
def test_init_from_starts_a_fresh_run_from_a_checkpoint_or_a_release(tmp_path, corpus):
    """--train.init_from: a fresh run (step 0, its own schedule) whose weights, EMA and global CMVN statistics are
    those of the checkpoint (its EMA average) or release it names. At learning rate 0 nothing can move them, so they
    must come out exactly as they went in."""
    from speechdraw.engine.checkpoint import CheckpointManager
    from speechdraw.engine.ema import checkpoint_weights

    common = ["recipes/asr/train.py", "--preset", "tiny", "--data.train", str(corpus), "--data.dev", str(corpus),
              "--data.max_dev_utts", "2", "--features.cmvn", "global", "--train.epochs", "1",
              "--train.ema_decay", "0.9", "--train.log_every", "1"]
    run_script([*common, "--train.run_dir", str(tmp_path / "a")])  # one epoch: best.pt and release/
    source = safe_load(tmp_path / "a" / "checkpoints" / "best.pt")
    expected, which = checkpoint_weights(source)
    assert which == "ema"
    # A model name too, as --model takes it (here one of the user's own releases under $SPEECHDRAW_MODELS).
    shutil.copytree(tmp_path / "a" / "release", tmp_path / "models" / "my-asr")
    for name, init in (("from-ckpt", tmp_path / "a" / "checkpoints" / "best.pt"),
                       ("from-release", tmp_path / "a" / "release"), ("from-name", "my-asr")):
        proc = run_script([*common, "--train.run_dir", str(tmp_path / name), "--train.max_steps", "2",
                           "--train.lr", "0", "--train.init_from", str(init),
                           "--data.stats_utts", "3"],  # statistics of its own would differ
                          SPEECHDRAW_MODELS=str(tmp_path / "models"))
        assert f"initialised from {init}" in proc.stderr
        state = safe_load(CheckpointManager(tmp_path / name / "checkpoints").list()[0][1])
        assert state["loop"]["step"] == 2
        for k, v in expected.items():
            assert torch.equal(state["model"][k], v), k
            if v.is_floating_point():
                assert torch.equal(state["ema"]["shadow"][k], v.float()), k
        got, want = state["extra"]["feature_stats"], source["extra"]["feature_stats"]
        assert got.keys() == want.keys() and all(torch.equal(torch.as_tensor(got[k]), torch.as_tensor(want[k]))
                                                 for k in want)
    # Weights of another shape: one line naming the option, no traceback.
    proc = run_script([*common, "--train.run_dir", str(tmp_path / "wrong"), "--model.hidden", "24",
                       "--train.init_from", str(tmp_path / "a" / "release")], check=False)
    assert proc.returncode != 0 and "--train.init_from" in proc.stderr and "do not fit" in proc.stderr
    assert "Traceback" not in proc.stderr
    # A name that is no model: one line naming the option and the name.
    proc = run_script([*common, "--train.run_dir", str(tmp_path / "unknown"), "--train.init_from", "no-such-model"],
                      check=False)
    assert proc.returncode != 0 and "--train.init_from no-such-model" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_manifests_are_one_line_and_write_nothing(tmp_path):
    # A missing training manifest and a dev manifest with a malformed line: each one line on stderr naming the file
    # (and the line), exit status 2, and no run directory made.
    good = tmp_path / "good.jsonl"
    good.write_text('{"audio": "a.wav", "duration": 1.0, "text": "a"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "a.wav", "duration": 1.0, "text": "a"}\n{"audio": "b.wav"}\n')
    for name, train, dev, said in [("missing", tmp_path / "nope.jsonl", good, "nope.jsonl"),
                                   ("malformed", good, bad, f"{bad}:2: missing field 'duration'")]:
        run_dir = tmp_path / name
        proc = run_script(["recipes/asr/train.py", "--preset", "tiny", "--data.train", str(train),
                           "--data.dev", str(dev), "--train.run_dir", str(run_dir)], check=False, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert said in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert not run_dir.exists()
