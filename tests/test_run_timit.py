"""recipes/asr/run_timit.py end to end on a miniature TIMIT tree in the LDC layout (TRAIN/DR1/FCJF0/SI648.WAV as NIST
SPHERE with .PHN/.WRD/.TXT; TEST/ with a development speaker, a core test speaker and one in neither), spoken by
espeak-ng, every stage with the tiny preset under torchrun (1 process); and the phone error rate on hand-worked
examples."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import soundfile as sf
import torch
from asr_fixtures import REPO, recipe

from speechdraw.asr.audio import resample
from speechdraw.asr.manifest import read_manifest

sys.path.insert(0, str(REPO / "recipes" / "asr"))  # run_timit imports its sibling stages.py, as a script does
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

# Pronunciations in TIMIT's 61 labels (closures before stops, q, hv, ux, ax, ix, ao: all folded away).
LEXICON = {"the": "dh ax", "a": "ax", "cat": "kcl k ae tcl t", "sat": "s ae tcl t", "on": "aa n",
           "mat": "m ae tcl t", "dog": "dcl d ao gcl g", "ran": "r ae n", "in": "ix n",
           "park": "pcl p aa r kcl k", "red": "r eh dcl d", "door": "dcl d ao r", "her": "hv er", "hat": "hh ae q",
           "is": "ih z", "blue": "bcl b l ux", "sun": "s ah n", "hot": "hh aa tcl t"}
SPEAKERS = {  # (part, dialect, speaker) -> sentences (SA1 first: left out of every split)
    ("TRAIN", "DR1", "FCJF0"): ["the sun is hot", "the cat sat on the mat", "a dog ran in the park", "the red door"],
    ("TRAIN", "DR1", "MDPK0"): ["the sun is hot", "her hat is blue", "the dog is red", "a cat ran on the mat"],
    ("TRAIN", "DR2", "MKLS0"): ["the sun is hot", "the door is red", "her cat is hot", "the dog sat in the park"],
    ("TEST", "DR1", "FAKS0"): ["the sun is hot", "the cat is red"],  # development speaker
    ("TEST", "DR1", "MDAB0"): ["the sun is hot", "her dog is blue", "a cat sat on the door"],  # core test speaker
    ("TEST", "DR2", "MABC0"): ["the sun is hot", "the hat is blue"],  # neither
}


def write_timit(root):
    for (part, dialect, speaker), sentences in SPEAKERS.items():
        d = root / part / dialect / speaker
        d.mkdir(parents=True)
        for i, text in enumerate(sentences):
            name = "SA1" if i == 0 else f"SX{10 * i + 3}"
            tmp = root / "tmp.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "-w", str(tmp), text], check=True,
                           capture_output=True)
            wave, sr = sf.read(str(tmp), dtype="float32")
            wave = resample(torch.from_numpy(wave), sr, 16_000).numpy()
            sf.write(str(d / f"{name}.WAV"), wave, 16_000, format="NIST", subtype="PCM_16")
            phones = ["h#"] + [p for w in text.split() for p in LEXICON[w].split()] + ["h#"]
            step = len(wave) // len(phones)  # evenly spread: the recipe reads labels, not times
            (d / f"{name}.PHN").write_text("".join(f"{k * step} {(k + 1) * step} {p}\n" for k, p in enumerate(phones)))
            (d / f"{name}.WRD").write_text("".join(f"{k * step} {(k + 1) * step} {w}\n"
                                                   for k, w in enumerate(text.split())))
            (d / f"{name}.TXT").write_text(f"0 {len(wave)} {text.capitalize()}.\n")
    (root / "tmp.wav").unlink()
    return root


def run_runner(root, exp, *extra):
    cmd = [sys.executable, str(REPO / "recipes" / "asr" / "run_timit.py"), "--timit-root", str(root), "--exp",
           str(exp), "--preset", "tiny", "--nproc", "1", "--jobs", "2",
           "--train-args", "--train.epochs 12 --train.log_every 50", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("timit")
    root, exp = write_timit(base / "TIMIT"), base / "exp"
    done = run_runner(root, exp)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root, exp, done


def test_phone_error_rate_hand_worked():
    per = recipe("run_timit").phone_error_rate
    # ref 5 phones; hyp: ae -> aa (1 substitution), t dropped (1 deletion): 2 / 5
    assert per(["sil b ae t sil"], ["sil b aa sil"]) == pytest.approx(2 / 5)
    # one inserted ae: 1 / 5; a perfect hypothesis: 0; an empty one: every phone deleted
    assert per(["sil b ae t sil"], ["sil b ae ae t sil"]) == pytest.approx(1 / 5)
    assert per(["sil b ae t sil"], ["sil b ae t sil"]) == 0.0
    assert per(["sil b ae t sil"], [""]) == 1.0
    # corpus total, not a mean of per-utterance rates: (2 + 0) / (5 + 3), not (0.4 + 0) / 2
    assert per(["sil b ae t sil", "s ah n"], ["sil b aa sil", "s ah n"]) == pytest.approx(2 / 8)


@needs_espeak
def test_every_stage_to_a_release_with_per_on_the_core_test_set(full_run):
    root, exp, done = full_run
    for n, name in enumerate(("check", "manifests", "train", "evaluate", "release")):
        assert f"stage {n} {name}: running" in done.stdout
        assert (exp / "stamps" / f"{n:02d}-{name}.done").is_file()
    layout = json.loads((exp / "data" / "layout.json").read_text())
    assert layout["train_speakers"] == ["FCJF0", "MDPK0", "MKLS0"] and layout["core_test_speakers_found"] == ["MDAB0"]
    assert "462" in done.stderr  # warned: not the standard training set
    # standard splits, SA1 left out, phones folded 61 -> 39 (the .PHN labels of "her dog is blue" worked by hand)
    train = read_manifest(exp / "data" / "train_phones.jsonl")
    assert len(train) == 9 and not any(e.extra["id"].endswith("SA1") for e in train)
    test = read_manifest(exp / "data" / "test_phones.jsonl")
    assert [e.speaker for e in test] == ["MDAB0", "MDAB0"]
    her_dog = next(e for e in test if e.extra["id"] == "MDAB0_SX13")
    assert her_dog.text == "sil hh er sil d aa sil g ih z sil b l uw sil"
    assert [e.speaker for e in read_manifest(exp / "data" / "dev_phones.jsonl")] == ["FAKS0"]
    # the PER record: the corpus total over the core test set's phones, from the per-utterance hypotheses
    record = json.loads((exp / "asr_timit.json").read_text())["figures"]
    per_utt = next(r for r in json.loads((exp / "eval.json").read_text())["results"]
                   if r["manifest"].endswith("test_phones.jsonl"))["per_utterance"]
    assert record["test"]["greedy"]["phones"] == sum(len(e.text.split()) for e in test)
    assert record["test"]["greedy"]["per"] == pytest.approx(
        recipe("run_timit").phone_error_rate([u["ref"] for u in per_utt], [u["hyp"] for u in per_utt]))
    g = record["test"]["greedy"]
    assert g["per"] == pytest.approx((g["sub"] + g["del"] + g["ins"]) / g["phones"])
    assert all(set(u["hyp"].split()) <= set(recipe("run_timit").TokenSet.phonemes().tokens) for u in per_utt)
    # the archive and its card
    with tarfile.open(exp / "asr-en-timit-phones.tar.gz") as tar:
        names = tar.getnames()
        card = json.load(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("card.json"))))
    assert any(n.endswith("tokens.txt") for n in names)
    assert card["headline"].startswith("core test PER") and "LDC" in card["licence"]
    figures = {k: v for r in card["results"] for k, v in r["figures"].items()}
    assert figures["core test PER, greedy"] == g["per"]


@needs_espeak
def test_rerun_is_a_no_op_and_stage_range_runs_only_that_part(full_run):
    root, exp, _ = full_run
    mtime = (exp / "am" / "release" / "config.json").stat().st_mtime_ns
    again = run_runner(root, exp)
    assert again.returncode == 0 and "running" not in again.stdout and again.stdout.count("done already") == 5
    (exp / "stamps" / "03-evaluate.done").unlink()
    part = run_runner(root, exp, "--stage", "3", "--stop-stage", "3")
    assert part.returncode == 0, part.stderr[-2000:]
    assert "stage 3 evaluate: running" in part.stdout and "stage 2" not in part.stdout and "stage 4" not in part.stdout
    assert (exp / "am" / "release" / "config.json").stat().st_mtime_ns == mtime


def test_missing_corpus_is_a_one_line_error(tmp_path):
    done = run_runner(tmp_path / "nowhere", tmp_path / "exp")
    assert done.returncode == 2 and "nowhere: no such directory" in done.stderr
    (tmp_path / "T" / "TRAIN").mkdir(parents=True)
    done = run_runner(tmp_path / "T", tmp_path / "exp")
    assert done.returncode == 1 and "no TEST/ directory" in done.stderr
