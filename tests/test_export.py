"""Release archives from recipes/asr/export.py and recipes/draw/export.py: weights stored as fp16 safetensors (no
model.pt left), a model card from the attached benchmark record, and after export -> archive -> pull -> load the
same outputs as the original release within fp16 tolerance (and not bit-identical: the weights really are compact)."""

from __future__ import annotations

import json
import shutil
import tarfile
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from asr_fixtures import recipe
from draw_fixtures import calm_model, tiny_config
from safetensors import safe_open

from speechdraw import models
from speechdraw.asr.beam import BeamConfig
from speechdraw.asr.features import FeatureConfig
from speechdraw.asr.lm.ngram import NGramConfig, train_ngram
from speechdraw.asr.lm.rnnlm import LSTMLM, RNNLMConfig, Vocabulary
from speechdraw.asr.model import AcousticModel, AcousticModelConfig
from speechdraw.asr.release import add_decoder, load_speech_release, save_speech_release
from speechdraw.asr.text import TokenSet
from speechdraw.draw.data import DataSource
from speechdraw.draw.sample import load_draw, sample
from speechdraw.engine.config import to_dict
from speechdraw.engine.release import save_release


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SPEECHDRAW_MODELS", raising=False)
    monkeypatch.setenv("SPEECHDRAW_REGISTRY", str(tmp_path / "registry.json"))


def draw_recipe_export():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("draw_export", Path(__file__).resolve().parents[1] / "recipes" /
                                                  "draw" / "export.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def stored_dtypes(release: Path) -> set:
    with safe_open(str(release / "model.safetensors"), "pt") as f:
        return {f.get_tensor(k).dtype for k in f.keys()}


def test_asr_export_archive_loads_with_the_same_outputs(store, tmp_path):
    torch.manual_seed(0)
    tokens = TokenSet.characters()
    mc = AcousticModelConfig(n_mels=16, stack=2, hidden=32, layers=2, dropout=0.0, vocab_size=len(tokens) + 1)
    release = save_speech_release(tmp_path / "release", AcousticModel(mc).state_dict(), mc,
                                  FeatureConfig(n_mels=16, cmvn="utterance"), None, tokens,
                                  metrics={"dev_cer": 0.5})
    # with a decoder and an LSTM LM, so the archive carries the rnnlm/ weights as safetensors too
    text = ["a b", "b a"]
    train_ngram(text, NGramConfig(order=2, units="char")).write_arpa(tmp_path / "lm.arpa")
    vocab = Vocabulary.build(text, "word")
    lm_cfg = RNNLMConfig(vocab_size=len(vocab), embed=8, hidden=8, layers=1, dropout=0.0)
    save_release(tmp_path / "rnnlm", LSTMLM(lm_cfg).state_dict(), to_dict(lm_cfg), kind="rnnlm",
                 copy_files={"vocab.txt": vocab.save(tmp_path / "vocab.txt")})
    add_decoder(release, BeamConfig(lm="lm.arpa", lm_weight=0.5, rescore_weight=0.3), base_dir=tmp_path,
                rnnlm=tmp_path / "rnnlm")
    record = tmp_path / "asr_decode.json"
    record.write_text(json.dumps({"name": "asr_decode", "git_commit": "abc123", "date": "2026-12-01",
                                  "figures": {"test": {"greedy": {"wer": 0.2}, "beam_word_ngram": {"wer": 0.0452}}}}))
    archive = tmp_path / "out" / "asr-test.tar.gz"
    recipe("export").main(["--release", str(release), "--archive", str(archive), "--name", "asr-test",
                           "--record", str(record), "--registry", str(tmp_path / "registry.json")])

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "asr-test/model.safetensors" in names and "asr-test/rnnlm/model.safetensors" in names
    assert not any(n.endswith("model.pt") for n in names) and "asr-test/lm.arpa" in names
    entry = json.loads((tmp_path / "registry.json").read_text())["models"][0]
    assert entry["sha256"] == models.file_sha256(archive) and entry["size"] == archive.stat().st_size
    assert entry["shipped"] == "out/asr-test.tar.gz" and entry["headline"].startswith("test WER 4.52%")

    loaded = models.load_model("asr-test", kind="asr")  # found through the registry, unpacked into the cache
    assert loaded.dir == models.cache_dir() / "asr-test"
    assert stored_dtypes(loaded.dir) == {torch.float16}
    assert loaded.beam_config is not None and loaded.rescorer_dir is not None
    card = json.loads((loaded.dir / "card.json").read_text())
    assert card["results"] == [{"record": "asr_decode", "file": "bench/results/asr_decode.json", "git_commit": "abc123",
                                "date": "2026-12-01", "figures": {"test WER, greedy": 0.2,
                                                                  "test WER, beam + word n-gram": 0.0452}}]
    assert card["training_metrics"] == {"dev_cer": 0.5} and card["weights"]["stored_dtype"] == "float16"
    readme = (loaded.dir / "README.md").read_text()
    assert "not trained on a single human recording" in readme and "test WER, beam + word n-gram: 0.0452" in readme

    original = load_speech_release(release)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    waves = [torch.randn(8000) * 0.1, torch.randn(5000) * 0.1]
    ref, ref_lens = original.log_probs(waves)
    out, out_lens = loaded.log_probs(waves)
    assert torch.equal(ref_lens, out_lens)
    diff = (ref - out).abs().max().item()
    assert 0 < diff < 5e-3, diff  # fp16-rounded weights: close, but not the same numbers
    sd_ref, sd_out = original.model.state_dict(), loaded.model.state_dict()
    for k, v in sd_ref.items():
        torch.testing.assert_close(sd_out[k], v.half().float(), rtol=0, atol=0)  # exactly the fp16 rounding


def test_draw_export_archive_samples_the_same(store, tmp_path):
    cfg = tiny_config()
    model = calm_model(cfg)
    release = save_release(tmp_path / "release", model.state_dict(), asdict(cfg), kind="draw",
                           metrics={"valid_bound": 90.0},
                           extra={"data": {"binarized_npz": "/somewhere/binarized_mnist.npz", "height": 12,
                                           "width": 12}})
    record = tmp_path / "draw_quality_paper40.json"
    record.write_text(json.dumps({"name": "draw_quality_paper40", "git_commit": "def", "date": "d", "figures": {
        "attention": {"test_bound_nats": 84.3, "iwae_bound_nats": 68.04}}}))
    archive = tmp_path / "draw-test.tar.gz"
    draw_recipe_export().main(["--release", str(release), "--archive", str(archive), "--name", "draw-test",
                               "--record", str(record), "--dtype", "bfloat16"])
    # a file path as --model: unpacked once into the cache
    loaded = models.load_model(str(archive), kind="draw")
    cached = models.cache_dir() / "draw-test"
    assert stored_dtypes(cached) == {torch.bfloat16}
    card = json.loads((cached / "card.json").read_text())
    assert card["trained_on"] == "MNIST with the Larochelle & Murray fixed binarisation (binarized_mnist.npz), 12x12x1"
    redrawn = draw_recipe_export().trained_on(DataSource(binarized_npz="/x/binarized_mnist.npz", root="/x/mnist",
                                                         binarization="dynamic", height=12, width=12))
    assert "fixed" not in redrawn and "re-binarised every epoch" in redrawn and "/x" not in redrawn
    assert card["headline"] == "test negative ELBO 84.30 nats (binarized MNIST)"
    assert card["results"][0]["figures"] == {"test negative ELBO, nats": 84.3, "IWAE bound (K=100), nats": 68.04}
    original, _ = load_draw(release)
    a = sample(original, 6, seed=3).images
    b = sample(loaded, 6, seed=3).images
    diff = (a - b).abs().max().item()
    assert 0 < diff < 0.05, diff  # bf16 weights (8 bits of mantissa) through 4 glimpses: pixels within 0.05

    # A wrong record is refused before anything is written.
    shutil.rmtree(cached)
    record.write_text(json.dumps({"name": "asr_quality", "figures": {}}))
    with pytest.raises(SystemExit, match="record 'asr_quality' is not one this recipe takes figures from"):
        draw_recipe_export().main(["--release", str(release), "--archive", str(tmp_path / "x.tar.gz"),
                                   "--record", str(record)])
    assert not (tmp_path / "x.tar.gz").exists()
