"""The ASR recipe end to end in real processes: speak two dozen sentences with espeak-ng, train the `tiny` preset until
it fits them, export a release, reload it weights-only and get the same greedy output from the library, evaluate.py
and a second export."""

from __future__ import annotations

import json

import torch
from asr_recipe_fixtures import needs_espeak, speak_corpus
from conftest import read_metrics, run_script

from speechdraw.asr.audio import load_audio
from speechdraw.asr.manifest import read_manifest
from speechdraw.asr.metrics import ErrorRates
from speechdraw.asr.release import load_speech_release
from speechdraw.engine.checkpoint import safe_load


@needs_espeak
def test_tiny_recipe_fits_exports_and_reloads(tmp_path):
    manifest = speak_corpus(tmp_path / "corpus")
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
