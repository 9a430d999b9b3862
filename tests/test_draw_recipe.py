"""The DRAW recipe end to end in real processes, on real MNIST: train the `tiny` preset, check its held-out bound and
its release, sample a PNG grid and a GIF with `speechdraw sample`, reconstruct test images, evaluate, refuse bad model
files with a clear error; and resume mid-run with identical losses."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, read_metrics, run_script, subprocess_env
from draw_fixtures import MNIST_DIR, require, threads, toy_larochelle
from PIL import Image

from speechdraw import cli
from speechdraw.draw import render
from speechdraw.draw.bounds import elbo_bound, evaluation_subset
from speechdraw.draw.data import ImageSet, mnist_splits
from speechdraw.draw.model import Draw, DrawConfig
from speechdraw.draw.sample import load_draw, sample
from speechdraw.engine.checkpoint import safe_load
from speechdraw.engine.release import ReleaseError

TRAIN = "recipes/draw/train.py"
TINY_STEPS = 10  # glimpses of the tiny preset


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One run of the tiny preset, shared by every test here."""
    require(MNIST_DIR)
    run = tmp_path_factory.mktemp("draw-tiny") / "run"
    proc = run_script([TRAIN, "--preset", "tiny", "--train.run_dir", str(run)], timeout=600)
    return run, proc


@pytest.fixture(scope="session")
def mnist():
    return mnist_splits(require(MNIST_DIR))


def test_tiny_preset_beats_independent_pixels_and_releases_its_best_weights(tiny_run, mnist):
    run, proc = tiny_run
    assert "24000 training images, 2000 validation images" in proc.stderr
    val = read_metrics(run, "val")
    bounds = [r["bound"] for r in val]
    assert [r["epoch"] for r in val] == [0, 1, 2]
    # Held-out MNIST images (a seeded 2,000 of the last 10,000 of the training file, never trained on). Measured:
    # 108.5 (this seed) and 113.8 (train.seed 1) after 3 epochs; the untrained model scores ~206-217.
    assert min(bounds) <= 130.0, bounds
    assert bounds[-1] < bounds[0]
    # What the learned canvas starts from: the independent-pixel model (logit of the mean image) scores ~206.
    valid = mnist.valid.images[:2000]
    with threads(1), torch.no_grad():
        base = Draw(DrawConfig(enc_size=128, dec_size=128, z_size=16, steps=TINY_STEPS, read_n=4, write_n=8))
        base.init_canvas_from_data(mnist.train.images[:24000].mean(0))
        logits = base.canvas0.expand_as(valid)
        independent = torch.nn.functional.binary_cross_entropy_with_logits(logits, valid, reduction="none")
        assert 195 < independent.flatten(1).sum(1).mean().item() < 215

    # The release: weights-only state dict, the model config, the data source; it holds best.pt's weights.
    release = run / "release"
    config = json.loads((release / "config.json").read_text())
    assert config["kind"] == "draw" and config["model"]["steps"] == TINY_STEPS
    assert config["data"]["root"] == str(MNIST_DIR) and config["data"]["seed"] == 2015
    assert config["metrics"]["valid_bound"] == pytest.approx(min(bounds))
    model, _ = load_draw(release)
    assert set(safe_load(release / "model.pt")) == set(model.state_dict())
    with threads(1):
        again = elbo_bound(model, mnist.valid, max_images=2000)
    assert again["bound"] == pytest.approx(min(bounds), abs=1e-3)  # same weights, same seeded noise, same images

    # The run's resolved config names the code that ran: this checkout's package at its commit.
    code = json.loads((run / "config.json").read_text())["code"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert code["package"] == str(REPO / "speechdraw") and code["git_commit"] == head
    assert isinstance(code["dirty"], bool) and code["dirty"] == bool(code["changed"])


def test_sample_command_writes_a_grid_and_a_gif_with_one_frame_per_glimpse(tiny_run, tmp_path):
    release = tiny_run[0] / "release"
    out = tmp_path / "samples"
    proc = subprocess.run([sys.executable, "-m", "speechdraw", "sample", "--model", str(release), "--num", "64",
                           "--out", str(out), "--seed", "3", "--gif", "--show-attention", "--frames"],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out / "samples.png") as im:
        assert im.format == "PNG" and im.size == render.grid_size(64, 28, 28, scale=2)
    with Image.open(out / "samples.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == TINY_STEPS
        gif.seek(TINY_STEPS - 1)
        last = gif.convert("RGB")
    a = np.asarray(last).astype(int)
    red = (a[..., 0] > 200) & (a[..., 1] < 80) & (a[..., 2] < 80)
    assert red.sum() > 100  # the write boxes
    assert len(list((out / "samples_frames").glob("glimpse_*.png"))) == TINY_STEPS

    # The Python API: the same seed gives the same images, another seed others; the final canvas is the last frame.
    model, _ = load_draw(release)
    with threads(1):
        a, b, c = (sample(model, 8, seed=s).images for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_reconstruct_test_images_and_evaluate(tiny_run, tmp_path, capsys):
    run = tiny_run[0]
    out = tmp_path / "recon"
    with threads(1):
        rc = cli.main(["sample", "--model", str(run / "release"), "--out", str(out), "--reconstruct", "test:6",
                       "--gif", "--show-attention"])
    printed = capsys.readouterr().out
    assert rc == 0
    chosen = " ".join(map(str, evaluation_subset(10000, 6, seed=0)[0].tolist()))
    assert f"6 random test images (seed 0; indices {chosen})" in printed  # never the first 6
    mean = float(re.search(r"mean negative ELBO ([0-9.]+) nats", printed).group(1))
    # These 6 images score 114.0 (this seed) and 121.9 (train.seed 1) trained; untrained 228 (c_0 from the data) or 573
    # (c_0 = 0).
    assert 90 < mean < 150, mean
    with Image.open(out / "reconstruction.gif") as gif:
        assert gif.n_frames == TINY_STEPS
        gif.seek(3)
        frame = gif.convert("RGB")
    a = np.asarray(frame).astype(int)
    green = (a[..., 1] > 200) & (a[..., 0] < 80) & (a[..., 2] < 80)
    assert green.sum() > 50  # the read boxes on the real images
    assert (out / "reconstruction.png").is_file()

    evaluate = run_script(["recipes/draw/evaluate.py", "--model", str(run / "release"), "--max-images", "1000",
                           "--iwae-k", "20", "--iwae-images", "100", "--json", str(tmp_path / "bounds.json")])
    figures = json.loads((tmp_path / "bounds.json").read_text())
    assert "importance-weighted bound, K=20" in evaluate.stdout
    assert figures["test_images"] == 1000 and figures["iwae_images"] == 100
    assert figures["test_subset"] == evaluation_subset(10000, 1000, seed=0)[1]  # a recorded random sample
    assert figures["iwae_subset"] == evaluation_subset(10000, 100, seed=0)[1]
    assert figures["iwae_bound"] < figures["elbo_bound_on_iwae_images"]  # the IWAE bound is the tighter one
    # The 1,000 test images score 110.1 (this seed) and 115.1 (train.seed 1), 1.5 and 1.3 nats above the validation
    # bound; an untrained model scores ~217 (and its own validation bound as much).
    assert 90 < figures["test_bound"] < 135, figures["test_bound"]
    assert abs(figures["test_bound"] - figures["release_metrics"]["valid_bound"]) < 5


def test_bad_model_files_give_a_clear_error(tiny_run, tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    proc = subprocess.run([sys.executable, "-m", "speechdraw", "sample", "--model", str(missing), "--out",
                           str(tmp_path / "o")], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and str(missing) in proc.stderr and "Traceback" not in proc.stderr

    # Weights that do not fit the config: a release whose config.json says 64 units.
    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_run[0] / "release", wrong)
    config = json.loads((wrong / "config.json").read_text())
    config["model"]["enc_size"] = 64
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(ReleaseError, match="model.pt"):
        load_draw(wrong)
    assert cli.main(["sample", "--model", str(wrong), "--out", str(tmp_path / "o")]) != 0
    assert str(wrong / "model.pt") in capsys.readouterr().err

    # A pickle that is not plain tensors is refused, not unpickled.
    (wrong / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(ReleaseError, match="model.pt"):
        load_draw(wrong)
    # An unconditional model asked for a class.
    assert cli.main(["sample", "--model", str(tiny_run[0] / "release"), "--out", str(tmp_path / "o"),
                     "--label", "3"]) == 2
    assert "not class-conditional" in capsys.readouterr().err
    assert cli.main(["sample", "--model", str(tiny_run[0] / "release"), "--out", str(tmp_path / "o"),
                     "--label", "all"]) == 2
    assert "not class-conditional" in capsys.readouterr().err
    assert cli.main(["sample", "--model", str(tiny_run[0] / "release"), "--out", str(tmp_path / "o"),
                     "--label", "seven"]) == 2
    assert "--label takes a class number or `all`, not 'seven'" in capsys.readouterr().err


def test_resume_mid_run_repeats_the_same_losses(tmp_path):
    """Stop after 4 steps, resume to 9: the losses equal an uninterrupted 9-step run. Dynamic binarisation, fresh
    noise for every z_t and an epoch boundary (6 steps per epoch, validation and checkpoint) in between."""
    require(MNIST_DIR)
    common = [TRAIN, "--preset", "tiny", "--data.max_train", "300", "--data.max_valid", "100",
              "--data.batch_size", "50", "--data.binarization", "dynamic", "--train.epochs", "2",
              "--train.log_every", "1"]
    run_script([*common, "--train.run_dir", str(tmp_path / "a"), "--train.max_steps", "9"])
    run_script([*common, "--train.run_dir", str(tmp_path / "b"), "--train.max_steps", "4"])
    proc = run_script([*common, "--train.run_dir", str(tmp_path / "b"), "--train.max_steps", "9",
                       "--train.resume", "auto"])
    assert "at step 4" in proc.stderr
    a = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "a")]
    b = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "b")]
    assert len(a) == 9 and a == b
    assert read_metrics(tmp_path / "a", "val")[0]["bound"] == read_metrics(tmp_path / "b", "val")[0]["bound"]


def test_ema_weights_are_validated_resumed_and_released(tmp_path, mnist):
    """--train.ema_decay: validation scores the averaged weights (the raw ones' bound logged beside), best.pt is chosen
    by them, the release holds them, and a run stopped at step 4 and resumed to 9 validates exactly as an
    uninterrupted one (the EMA state travels in the checkpoint)."""
    require(MNIST_DIR)
    common = [TRAIN, "--preset", "tiny", "--data.max_train", "300", "--data.max_valid", "100",
              "--data.batch_size", "50", "--train.epochs", "2", "--train.ema_decay", "0.9"]
    run_script([*common, "--train.run_dir", str(tmp_path / "a"), "--train.max_steps", "9"])
    run_script([*common, "--train.run_dir", str(tmp_path / "b"), "--train.max_steps", "4"])
    proc = run_script([*common, "--train.run_dir", str(tmp_path / "b"), "--train.max_steps", "9",
                       "--train.resume", "auto"])
    assert "at step 4" in proc.stderr and "with EMA weights (raw weights" in proc.stderr
    (val,) = read_metrics(tmp_path / "a", "val")  # epoch 0 ends at step 6
    (resumed,) = read_metrics(tmp_path / "b", "val")
    # Equal to float rounding (a restarted EMA, averaged from step 4 on, differs by whole nats at decay 0.9).
    assert resumed["bound"] == pytest.approx(val["bound"], abs=1e-4)
    assert resumed["bound_raw"] == pytest.approx(val["bound_raw"], abs=1e-4)
    assert abs(val["bound"] - val["bound_raw"]) > 0.01  # two different sets of weights were scored

    best = safe_load(tmp_path / "a" / "checkpoints" / "best.pt")
    released = safe_load(tmp_path / "a" / "release" / "model.pt")
    shadow = best["ema"]["shadow"]
    assert set(released) == set(best["model"])
    assert all(torch.equal(released[k], shadow[k].to(v.dtype)) for k, v in best["model"].items() if k in shadow)
    assert any(not torch.equal(released[k], best["model"][k]) for k in shadow)
    config = json.loads((tmp_path / "a" / "release" / "config.json").read_text())
    assert config["metrics"]["weights"] == "ema" and config["train"]["ema_decay"] == 0.9
    model, _ = load_draw(tmp_path / "a" / "release")
    with threads(1):
        again = elbo_bound(model, mnist.valid, max_images=100)
    assert again["bound"] == pytest.approx(val["bound"], abs=1e-3)  # the release scores what validation logged


def test_dynamic_binarisation_of_the_larochelle_npz_redraws_its_own_training_digits(tmp_path):
    """--data.binarization dynamic with --data.binarized_npz: the npz's training images are traced to their grey
    digits in --data.root and re-drawn each epoch, validation stays the npz's; without the grey digits at
    --data.root it stops with exit status 2 and one line before writing anything."""
    root, npz, _ = toy_larochelle(tmp_path)
    common = [TRAIN, "--preset", "tiny", "--data.binarized_npz", str(npz), "--data.binarization", "dynamic",
              "--data.batch_size", "50", "--train.epochs", "1"]
    run = tmp_path / "run"
    proc = run_script([*common, "--data.root", str(tmp_path / "nowhere"), "--train.run_dir", str(run)], check=False)
    assert proc.returncode == 2, proc.stderr
    assert str(tmp_path / "nowhere") in proc.stderr and "--data.root" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not run.exists()

    proc = run_script([*common, "--data.root", str(root), "--train.run_dir", str(run)],
                      XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert f"its training digits re-drawn every epoch from their grey versions in {root}" in proc.stderr
    assert "200 training images, 50 validation images" in proc.stderr
    (val,) = read_metrics(run, "val")
    assert val["step"] == 4 and math.isfinite(val["bound"])
    assert list((tmp_path / "cache" / "speechdraw" / "draw").glob("larochelle-grey-sources-*.npz"))


def test_class_conditional_run_starts_from_an_unconditional_model(tiny_run, tmp_path, mnist):
    """--model.num_classes 10 --train.init_from an unconditional run: the label weights start at zero, so before any
    step the conditional model scores exactly what the unconditional one scores, with any label; after training
    its release is class-conditional and draws a chosen digit."""
    run, _ = tiny_run
    init = run / "checkpoints" / "best.pt"
    common = [TRAIN, "--preset", "tiny", "--model.num_classes", "10", "--data.max_train", "200", "--data.max_valid",
              "100", "--data.batch_size", "50", "--train.init_from", str(init), "--train.epochs", "1"]
    # One epoch of 4 steps at learning rate 0: a release whose weights are the initial ones.
    proc = run_script([*common, "--train.run_dir", str(tmp_path / "zero"), "--train.lr", "0"])
    assert f"initialised from {init}" in proc.stderr
    unconditional, _ = load_draw(run / "release")
    conditional, _ = load_draw(tmp_path / "zero" / "release")
    assert conditional.cfg.num_classes == 10 and unconditional.cfg.num_classes == 0
    x = mnist.valid.images[:6]
    eps = torch.randn(TINY_STEPS, 6, conditional.cfg.z_size)
    with torch.no_grad():
        want = unconditional(x, eps=eps).nll_bound
        for label in (0, 7):
            got = conditional(x, torch.full((6,), label), eps=eps).nll_bound
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    run_script([*common, "--train.run_dir", str(tmp_path / "cond")])
    trained, _ = load_draw(tmp_path / "cond" / "release")
    gen = torch.Generator().manual_seed(0)
    a = trained.generate(3, labels=torch.full((3,), 1), generator=gen, return_steps=False).canvases
    gen = torch.Generator().manual_seed(0)
    b = trained.generate(3, labels=torch.full((3,), 8), generator=gen, return_steps=False).canvases
    assert not torch.allclose(a, b)  # the label weights moved off zero
    # The quality record scores both, the conditional one with the test labels, and says which is which. The start
    # is given as a model (its release directory, as a shipped model would be), the conditional one as its run.
    out = tmp_path / "results"
    run_script(["bench/draw_quality.py", "--runs", str(run / "release"), str(tmp_path / "cond"), "--iwae-k", "4",
                "--iwae-images", "50", "--results-dir", str(out), "--allow-dirty", "--name", "cond"])
    figures = json.loads((out / "cond.json").read_text())["figures"]
    plain, labelled = figures["attention"], figures["attention_cond"]
    assert plain["shipped_model"] == str(run / "release") and plain["run"] is None
    assert plain["learning_curve"] == [] and plain["epochs_trained"] is None
    assert labelled["run"] == str(tmp_path / "cond") and labelled["shipped_model"] is None
    assert [r["epoch"] for r in labelled["learning_curve"]] == [0] and labelled["epochs_trained"] == 1
    assert "class-conditional (10 labels)" in labelled["model"] and "conditional" not in plain["model"]
    assert plain["test_images"] == labelled["test_images"] == 10000 and labelled["iwae_images"] == 50
    # The spread and the cost of each bound are recorded too: a README quotes them.
    for f in (plain, labelled):
        assert 0 < f["iwae_bound_stderr"] < 20 and f["iwae_seconds"] > 0 and f["test_bound_seconds"] > 0
    with threads(1):
        want = elbo_bound(trained, mnist.test)["bound"]
        wrong = elbo_bound(trained, ImageSet(mnist.test.images, (mnist.test.labels + 1) % 10))["bound"]
    assert labelled["test_bound_nats"] == pytest.approx(want, abs=0.01)
    # Label use: the same digits each given the next class's label, recorded for the conditional run only.
    assert labelled["test_bound_wrong_label_nats"] == pytest.approx(wrong, abs=0.01) and abs(wrong - want) > 0.01
    assert plain["test_bound_wrong_label_nats"] is None


def test_compile_flag_compiles_each_glimpse_and_trains_the_same(tmp_path):
    """--train.compile true compiles DRAW's glimpse (Draw.compile_step; torch.compile of the whole unrolled model
    stopped with a dynamo error): the same losses as the eager run, through an epoch boundary and its validation."""
    require(MNIST_DIR)
    common = [TRAIN, "--preset", "tiny", "--data.max_train", "150", "--data.max_valid", "100",
              "--data.batch_size", "50", "--train.epochs", "2", "--train.log_every", "1"]
    run_script([*common, "--train.run_dir", str(tmp_path / "eager")])
    proc = run_script([*common, "--train.run_dir", str(tmp_path / "compiled"), "--train.compile", "true"])
    assert "torch.compile: Draw.compile_step" in proc.stderr
    assert "lru_cache" not in proc.stderr  # dynamo's warning about tracing through a cache (attention._constants)
    eager, compiled = read_metrics(tmp_path / "eager"), read_metrics(tmp_path / "compiled")
    assert [r["step"] for r in compiled] == [r["step"] for r in eager] == list(range(1, 7))
    for a, b in zip(eager, compiled):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-4), (a, b)
    va, vb = read_metrics(tmp_path / "eager", "val"), read_metrics(tmp_path / "compiled", "val")
    assert len(va) == len(vb) == 2 and all(math.isclose(a["bound"], b["bound"], rel_tol=1e-4) for a, b in zip(va, vb))
