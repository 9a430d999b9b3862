"""`speechdraw evaluate` in a real subprocess on real speech (espeak-ng) with a model found by name: errors planted in
the references around the model's own hypotheses are reported exactly (counts, confusions, aligned errors, JSON, the
errs file); recipes/asr/evaluate.py gives the same figures; bad manifests and models are one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import soundfile as sf
import torch
from asr_fixtures import recipe
from asr_recipe_fixtures import SENTENCES, needs_espeak
from conftest import REPO, subprocess_env
from transcribe_fixtures import SR, speak_pieces

from speechdraw.asr.features import FeatureConfig
from speechdraw.asr.manifest import ManifestEntry, write_manifest
from speechdraw.asr.model import AcousticModel, AcousticModelConfig
from speechdraw.asr.release import save_speech_release
from speechdraw.asr.text import TokenSet

pytestmark = needs_espeak


def evaluate(*args, models):
    return subprocess.run([sys.executable, "-m", "speechdraw", "evaluate", *map(str, args)], cwd=REPO,
                          env=subprocess_env(SPEECHDRAW_MODELS=str(models)), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A (random-weights, seeded) release installed under the name eval-tiny, and 6 spoken sentences."""
    d = tmp_path_factory.mktemp("evaluate")
    tokens = TokenSet.characters()
    torch.manual_seed(3)
    cfg = AcousticModelConfig(n_mels=16, stack=2, hidden=32, layers=1, dropout=0.0, vocab_size=len(tokens) + 1)
    save_speech_release(d / "models" / "eval-tiny", AcousticModel(cfg).state_dict(), cfg,
                        FeatureConfig(n_mels=16, cmvn="utterance"), None, tokens)
    entries = []
    for i, p in enumerate(speak_pieces(d / "speech", SENTENCES[:6])):
        path = d / "audio" / f"utt{i}.flac"
        path.parent.mkdir(exist_ok=True)
        sf.write(str(path), p.wave, SR)
        entries.append(ManifestEntry(str(path), len(p.wave) / SR, p.text))
    write_manifest(d / "spoken.jsonl", entries)
    out = evaluate("--model", "eval-tiny", "--manifest", d / "spoken.jsonl", "--json", d / "first.json",
                   "--device", "cpu", models=d / "models")
    assert out.returncode == 0, out.stderr
    hyps = [u["hyp"] for u in json.loads((d / "first.json").read_text())["results"][0]["per_utterance"]]
    return d, entries, hyps


def test_planted_errors_are_reported_exactly(setup, tmp_path):
    d, entries, hyps = setup
    usable = [i for i, h in enumerate(hyps) if len(set(h.split()) - {"zebra"}) >= 1]
    assert len(usable) >= 3, hyps  # the seeded model says something on most utterances
    a, b, c = usable[:3]
    words = {i: hyps[i].split() for i in (a, b, c)}
    refs = {i: e.text for i, e in enumerate(entries)}
    planted = {i: hyps[i] for i in range(len(entries))}  # every other reference: exactly what the model says
    planted[a] = "zebra zebra " + hyps[a]  # two deletions
    planted[b] = " ".join(words[b][1:])  # one insertion: the model's first word
    planted[c] = " ".join(["zebra", *words[c][1:]])  # one substitution of the first word
    assert refs  # (the real texts are not used: the random model cannot say them)
    manifest = tmp_path / "planted.jsonl"
    write_manifest(manifest, [ManifestEntry(e.audio, e.duration, planted[i]) for i, e in enumerate(entries)])

    out = evaluate("--model", "eval-tiny", "--manifest", manifest, "--json", tmp_path / "r.json", "--errs",
                   tmp_path / "errs.txt", "--device", "cpu", models=d / "models")
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path / "r.json").read_text())["results"][0]
    total_ref = sum(len(planted[i].split()) for i in planted)
    assert r["word_errors"] == {"sub": 1, "del": 2, "ins": 1, "ref": total_ref}
    assert r["wer"] == pytest.approx(4 / total_ref)
    assert r["confusions"] == {"substitutions": [["zebra", words[c][0], 1]], "deletions": [["zebra", 2]],
                               "insertions": [[words[b][0], 1]]}
    per = r["per_utterance"]
    assert [u["hyp"] for u in per] == hyps
    assert per[a]["aligned"] == "(zebra->*) (zebra->*) " + hyps[a]
    assert per[b]["aligned"] == " ".join([f"(*->{words[b][0]})", *words[b][1:]])
    assert per[c]["aligned"] == " ".join([f"(zebra->{words[c][0]})", *words[c][1:]])
    assert all(u["word_errors"] == 0 for i, u in enumerate(per) if i not in (a, b, c))
    # Printed: the table row, the %WER line, the aligned utterances and the confusions.
    assert "1/2/1" in out.stdout.replace(" ", "")
    assert f"%WER {100 * 4 / total_ref:.2f} [ 4 / {total_ref}, 1 ins, 2 del, 1 sub ]" in out.stdout
    assert f"utt{a}.flac:\t(zebra->*) " in out.stdout and f"zebra -> {words[c][0]}" in out.stdout
    errs = (tmp_path / "errs.txt").read_text()
    assert "PER-UTT DETAILS (3 of 6 utterances with errors)" in errs and "SUBSTITUTIONS" in errs

    # --transcripts: every utterance's reference with the transcript under it and its word errors, no confusions.
    out = evaluate("--model", "eval-tiny", "--manifest", manifest, "--transcripts", "--device", "cpu",
                   models=d / "models")
    assert out.returncode == 0, out.stderr
    assert "SUBSTITUTIONS" not in out.stdout and "1/2/1" in out.stdout.replace(" ", "")
    for i in range(len(entries)):
        wrong = {a: 2, b: 1, c: 1}.get(i, 0)
        assert (f"utt{i}.flac\n  reference  {planted[i]}\n  greedy     {hyps[i]}   "
                f"[{wrong} of {len(planted[i].split())} words wrong]") in out.stdout

    # The recipe is the same command run from a checkout: the same figures.
    assert recipe("evaluate").main(["--model", str(d / "models" / "eval-tiny"), "--manifest", str(manifest),
                                    "--json", str(tmp_path / "recipe.json"), "--device", "cpu"]) == 0
    again = json.loads((tmp_path / "recipe.json").read_text())["results"][0]
    for key in ("word_errors", "char_errors", "confusions", "per_utterance", "wer", "cer"):
        assert again[key] == r[key]


def test_bad_inputs_are_one_line_and_exit_2(setup, tmp_path, capsys, monkeypatch):
    """In this process (the subprocess path is the test above): the same cli.main the installed command runs."""
    from speechdraw import cli

    d, entries, _ = setup
    monkeypatch.setenv("SPEECHDRAW_MODELS", str(d / "models"))
    (tmp_path / "bad.jsonl").write_text('{"audio": "x.wav", "duration": 1, "text": "a"}\nnot json\n')
    cases = [(["--manifest", tmp_path / "none.jsonl"], "none.jsonl: no such manifest"),
             (["--manifest", tmp_path / "bad.jsonl"], "bad.jsonl:2: not valid JSON"),
             (["--model", "no-such-model", "--manifest", d / "spoken.jsonl"], "no-such-model"),
             (["--manifest", d / "spoken.jsonl", "--decoder", "beam"], "no decoder.json")]
    for args, message in cases:
        if "--model" not in args:
            args = ["--model", "eval-tiny", *args]
        code = cli.main(["evaluate", *map(str, args), "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("speechdraw evaluate: error: ") and message in lines[0], lines
