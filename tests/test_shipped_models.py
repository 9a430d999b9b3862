"""The models shipped in models/: each archive is what models/registry.json says (size and sha256), all of them
together fit in 40 MB; the default speech model, found by name with no --model in an empty cache, transcribes
held-out speech: sentences of the synthetic corpus's test split (never in its training audio or its LM text) spoken by
an espeak-ng voice variant that no training utterance uses; the default DRAW model draws with no --model and scores
held-out test digits near its recorded bound, and the class-conditional one draws every label and scores held-out digits
given their labels."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch
from asr_fixtures import prep
from asr_recipe_fixtures import needs_espeak
from conftest import REPO, SHARED, subprocess_env
from PIL import Image

from speechdraw import models
from speechdraw.asr.metrics import ErrorRates
from speechdraw.draw.bounds import elbo_bound
from speechdraw.draw.data import load_binarized_mnist, mnist_splits

REGISTRY = REPO / "models" / "registry.json"
# 2 of these 48 words were wrong when the first augmented model shipped (4.2% WER); greedy decoding alone, without the
# shipped decoder's word LM, gets ~30-37% wrong on the test set, an untrained model nearly all.
BOUND = 0.15
HELD_OUT = [  # test split of data_prep/synth_speech.py (seed 0, 1,000 dev and test sentences): held out of training
    "for as many as are of the works of the law are under a curse",
    "again the high priest asked him are you the christ the son of the blessed",
    "he struck them with blindness according to the word of elisha",
    "i will be sorry for my sin",
]


def test_archives_are_what_the_registry_says_and_fit_in_40_mb():
    registry = json.loads(REGISTRY.read_text())
    shipped = {m["name"]: m for m in registry["models"] if m.get("shipped")}
    assert registry["defaults"]["asr"] in shipped  # `speechdraw transcribe talk.wav` works after install
    assert registry["defaults"]["draw"] in shipped  # and `speechdraw sample --out pics`
    total = 0
    for m in shipped.values():
        path = REGISTRY.parent / m["shipped"]
        assert path.parent == REGISTRY.parent and path.stat().st_size == m["size"], m["name"]
        assert models.file_sha256(path) == m["sha256"], m["name"]
        with tarfile.open(path) as tar:  # the card inside says plainly what the model has not heard or seen
            card = json.load(tar.extractfile(next(x for x in tar.getmembers() if x.name.endswith("/card.json"))))
        assert card["name"] == m["name"] and card["has_not_seen"] and card["trained_on"] == m["trained_on"]
        total += m["size"]
    assert total <= 40 * 10**6


@needs_espeak
def test_the_default_speech_model_transcribes_held_out_speech(tmp_path):
    synth = prep("synth_speech")
    files = []
    for i, text in enumerate(HELD_OUT):  # m7: one of the four variants kept out of training
        samples, sr = synth.speak(synth.Utterance(f"h{i}", "test", text, "en-us", "m7", 165, 45), tmp_path / "t.wav")
        path = tmp_path / f"held-{i}.wav"
        sf.write(str(path), samples, sr)
        files.append(path)
    env = subprocess_env(XDG_CACHE_HOME=str(tmp_path / "cache"))  # empty cache: the shipped archive is unpacked
    env.pop("SPEECHDRAW_MODELS", None)
    proc = subprocess.run([sys.executable, "-m", "speechdraw", "transcribe", *map(str, files), "--output-dir",
                           str(tmp_path / "out"), "--format", "txt"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    hyps = [(tmp_path / "out" / f"held-{i}.txt").read_text().strip() for i in range(len(HELD_OUT))]
    rates = ErrorRates.empty()
    for ref, hyp in zip(HELD_OUT, hyps):
        rates.add(ref, hyp)
    assert rates.wer <= BOUND, (rates.wer, hyps)


NPZ = SHARED / "data" / "binarized_mnist" / "binarized_mnist.npz"
# The shipped DRAW model's negative ELBO on a seeded random 500 of the paper's test images (the test set is sorted by
# class: never its first N) was 83.61 nats when it shipped (run draw-paper-v3; 82.09 on all 10,000). The one it
# replaced (draw-dyn5) scored 85.65 there (83.33 on all 10,000) and fails; the same images and noise seed for both
# make the comparison paired. An untrained model scores about 540, the tiny preset about 110.
DRAW_BOUND = 84.60


def test_the_default_draw_model_draws_without_model_and_scores_held_out_digits(tmp_path, monkeypatch):
    env = subprocess_env(XDG_CACHE_HOME=str(tmp_path / "cache"))  # empty cache: the shipped archive is unpacked
    env.pop("SPEECHDRAW_MODELS", None)
    proc = subprocess.run([sys.executable, "-m", "speechdraw", "sample", "--out", str(tmp_path / "pics"), "--num", "16",
                           "--gif", "--gif-num", "4"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    pngs, gifs = sorted((tmp_path / "pics").glob("*.png")), sorted((tmp_path / "pics").glob("*.gif"))
    assert len(pngs) == 1 and len(gifs) == 1, sorted(p.name for p in (tmp_path / "pics").iterdir())
    with Image.open(pngs[0]) as grid:
        pixels = np.asarray(grid.convert("L"), dtype=np.float32) / 255
    assert 0.05 < pixels.mean() < 0.5  # strokes on a blank page, not an empty or a filled grid
    with Image.open(gifs[0]) as gif:
        assert gif.n_frames >= 64  # one frame per glimpse of the paper's T = 64
    if not NPZ.exists():
        pytest.skip(f"{NPZ} is missing")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SPEECHDRAW_MODELS", raising=False)
    model = models.load_model(None, kind="draw")
    torch.manual_seed(0)
    result = elbo_bound(model, load_binarized_mnist(NPZ).test, max_images=500, subset_seed=0, seed=0)
    assert result["images"] == 500 and result["bound"] <= DRAW_BOUND, result


# draw-mnist-cond's negative ELBO, given the labels, on a seeded random 500 of the IDX test digits (fixed binarisation,
# seed 2015) was 80.59 nats when it shipped (run draw-cond4; 79.46 on all 10,000). The model it replaced (draw-cond3)
# scored 81.80, the not-shipped draw-cond2 83.18 and the unconditional draw-mnist it started from 83.18: all three
# fail. Given each digit the next class's label instead it scores 98.00: a model that ignored its labels would score
# the same both ways and fails the gap of 10 (draw-cond2: 87.24, a gap of 4.06).
DRAW_COND_BOUND = 81.2


def test_the_class_conditional_draw_model_draws_each_label_and_scores_held_out_digits(tmp_path, monkeypatch):
    env = subprocess_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("SPEECHDRAW_MODELS", None)
    proc = subprocess.run([sys.executable, "-m", "speechdraw", "sample", "--model", "draw-mnist-cond", "--label", "all",
                           "--num", "4", "--out", str(tmp_path / "pics")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "pics" / "samples_by_label.png") as grid:
        assert grid.size[1] > 2 * grid.size[0]  # ten rows (one per label) of four
    mnist = SHARED / "data" / "mnist"
    if not mnist.exists():
        pytest.skip(f"{mnist} is missing")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SPEECHDRAW_MODELS", raising=False)
    model = models.load_model("draw-mnist-cond", kind="draw")
    assert model.cfg.num_classes == 10
    test = mnist_splits(mnist).test
    result = elbo_bound(model, test, max_images=500, subset_seed=0, seed=0)
    assert result["images"] == 500 and result["bound"] <= DRAW_COND_BOUND, result
    wrong = elbo_bound(model, test.with_next_labels(10), max_images=500, subset_seed=0, seed=0)
    assert wrong["bound"] > result["bound"] + 10, (wrong, result)
