"""The acoustic model exported as ONNX (speechdraw/asr/onnx.py, recipes/asr/export.py --onnx) and run by onnxruntime
(`speechdraw transcribe --backend onnxruntime`): the same log-probabilities as PyTorch on real espeak-ng speech, for
single utterances of many lengths (the graph's axes are dynamic) and a padded batch; the same transcript end to end;
one-line errors for a release without model.onnx, one exported from other weights, and onnxruntime missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from asr_fixtures import recipe
from asr_recipe_fixtures import needs_espeak
from conftest import REPO, run_script, subprocess_env
from transcribe_fixtures import SR, noise

from speechdraw.asr.features import FeatureConfig
from speechdraw.asr.model import AcousticModel, AcousticModelConfig
from speechdraw.asr.onnx import ONNX_FILE, OnnxAcousticModel, export_onnx
from speechdraw.asr.release import load_speech_release, save_speech_release
from speechdraw.asr.text import TokenSet
from speechdraw.engine.release import ReleaseError

pytestmark = needs_espeak
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def random_release(path, stack: int, seed: int = 0):
    """A seeded random-weights model (parity needs no training): 80 real log-mel bands, a projection, 2 BiLSTMs."""
    torch.manual_seed(seed)
    tokens = TokenSet.characters()
    mc = AcousticModelConfig(n_mels=80, stack=stack, input_proj=48, hidden=32, layers=2, dropout=0.0,
                             vocab_size=len(tokens) + 1)
    return save_speech_release(path, AcousticModel(mc).state_dict(), mc, FeatureConfig(cmvn="utterance"), None,
                               tokens)


@pytest.mark.parametrize("stack", [1, 3])
def test_log_probs_match_pytorch_for_many_lengths_and_a_padded_batch(pieces, tmp_path, stack):
    asr = load_speech_release(random_release(tmp_path / "release", stack))
    recipe("export").main(["--release", str(asr.dir), "--onnx"])
    ort_model = OnnxAcousticModel(asr)
    # Real speech cut to lengths that leave every remainder modulo stack, from a few frames to a whole sentence.
    speech = [torch.from_numpy(p.wave) for p in pieces[:4]]
    hop, n_fft = asr.feature_config.hop, asr.feature_config.n_fft
    waves = [speech[0][: n_fft + hop * n] for n in (0, 1, 2, 7, 40, 41, 101)] + speech
    frames = [asr.feature_config.num_frames(len(w)) for w in waves]
    assert {f % stack for f in frames} == set(range(stack)) and max(frames) > 3 * min(frames) + 100

    worst = 0.0
    for w in waves:  # one at a time: every length a new T for the graph
        ref, ref_lens = asr.log_probs([w])
        out, out_lens = ort_model.log_probs([w])
        assert out.shape == ref.shape and torch.equal(out_lens, ref_lens)
        worst = max(worst, float((out - ref).abs().max()))
    # One padded batch: each utterance's outputs within its own length, whatever pads it.
    ref, ref_lens = asr.log_probs(waves)
    out, out_lens = ort_model.log_probs(waves)
    assert out.shape == ref.shape and torch.equal(out_lens, ref_lens) and len(set(ref_lens.tolist())) > 5
    for b, n in enumerate(ref_lens.tolist()):
        worst = max(worst, float((out[b, :n] - ref[b, :n]).abs().max()))
    print(f"stack {stack}: max |log-prob difference| {worst:.2e}")
    assert worst < 1e-4
    assert float(ref.exp().sum(-1).sub(1).abs().max()) < 1e-4  # they are log-probabilities: a real comparison


def test_release_without_or_with_a_stale_onnx_file(tmp_path):
    release = random_release(tmp_path / "release", stack=2)
    asr = load_speech_release(release)
    with pytest.raises(ReleaseError, match=f"{release}/model.onnx: no ONNX model in the release: write it with "):
        OnnxAcousticModel(asr)
    export_onnx(asr)
    random_release(release, stack=2, seed=1)  # the same release retrained: model.onnx left from the old weights
    with pytest.raises(ReleaseError, match="does not compute what the release's weights do"):
        OnnxAcousticModel(load_speech_release(release))


def padded(piece, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.zeros(4000, np.float32), piece.wave, np.zeros(4000, np.float32)])
    return x + noise(len(x), rng)


def test_transcribe_backend_onnxruntime_gives_the_torch_transcript(release, pieces, tmp_path):
    rel = tmp_path / "release"
    shutil.copytree(release, rel)  # the trained model shared with test_asr_transcribe: exported into a copy
    files = []
    for i in (0, 5, 9):
        files.append(tmp_path / f"{i}.flac")
        sf.write(str(files[-1]), padded(pieces[i], i), SR)
    args = ["-m", "speechdraw", "transcribe", *map(str, files), "--model", str(rel), "--format", "json", "--quiet",
            "--device", "cpu", "--batch-size", "2"]
    missing = run_script(args + ["--backend", "onnxruntime"], check=False)
    assert missing.returncode == 2 and missing.stderr.splitlines() == [
        f"speechdraw transcribe: error: {rel}/{ONNX_FILE}: no ONNX model in the release: write it with python "
        f"recipes/asr/export.py --release {rel} --onnx"]

    run_script(["recipes/asr/export.py", "--release", str(rel), "--onnx"])
    torch_out = [json.loads(line) for line in run_script(args).stdout.splitlines()]
    ort_out = [json.loads(line) for line in run_script(args + ["--backend", "onnxruntime"]).stdout.splitlines()]
    print("torch:", [t["text"] for t in torch_out], "onnxruntime:", [t["text"] for t in ort_out])
    assert [t["text"] for t in ort_out] == [t["text"] for t in torch_out]
    assert [t["text"] for t in torch_out] == [pieces[i].text for i in (0, 5, 9)]  # the model hears them right
    for a, b in zip(torch_out, ort_out):
        assert [(w["start"], w["end"]) for w in a["words"]] == [(w["start"], w["end"]) for w in b["words"]]
        assert all(abs(x["confidence"] - y["confidence"]) < 1e-3 for x, y in zip(a["words"], b["words"]))


def test_missing_onnxruntime_is_one_line(release, pieces, tmp_path):
    """onnxruntime made unimportable in a real process: one line naming the extra to install, exit 2."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "onnxruntime.py").write_text("raise ImportError('No module named onnxruntime')\n")
    sf.write(str(tmp_path / "a.flac"), padded(pieces[0], 0), SR)
    proc = subprocess.run([sys.executable, "-m", "speechdraw", "transcribe", str(tmp_path / "a.flac"), "--model",
                           str(release), "--backend", "onnxruntime"], cwd=REPO, capture_output=True, text=True,
                          env=subprocess_env(PYTHONPATH=f"{block}:{REPO}"), timeout=120)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "speechdraw transcribe: error: onnxruntime is not installed: pip install 'speechdraw[onnx]'"], proc.stderr
