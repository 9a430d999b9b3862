"""Beam search inside the speech release: decoder.json + LM + lexicon + rnnlm/ written, reloaded (weights-only) and
decoding exactly as the files did before; export.py --decoder; tune_decoder.py's search picks the LM weight that
fixes the red/read ambiguity, and the recipe end to end on a small release writes weights that evaluate.py
reproduces."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from asr_fixtures import recipe, write_audio
from test_asr_beam import LM_TEXT, TOKENS, ambiguous

from speechdraw.asr.beam import BeamConfig, BeamSearchDecoder, Hypothesis, write_lexicon
from speechdraw.asr.features import FeatureConfig
from speechdraw.asr.lm.ngram import NGramConfig, train_ngram
from speechdraw.asr.lm.rnnlm import LSTMLM, RNNLMConfig, Vocabulary, load_rnnlm, rescore_nbest
from speechdraw.asr.model import AcousticModel, AcousticModelConfig
from speechdraw.asr.release import add_decoder, load_speech_release, save_speech_release
from speechdraw.engine.checkpoint import FORMAT_VERSION
from speechdraw.engine.config import to_dict
from speechdraw.engine.release import ReleaseError, save_release


def small_model() -> tuple[AcousticModel, AcousticModelConfig, FeatureConfig]:
    torch.manual_seed(0)
    cfg = AcousticModelConfig(n_mels=16, stack=4, hidden=16, layers=1, dropout=0.0)
    return AcousticModel(cfg), cfg, FeatureConfig(n_mels=16, cmvn="utterance")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """LM files of the red/read text, an (untrained) LSTM LM release and an (untrained) acoustic release."""
    d = tmp_path_factory.mktemp("decoder")
    train_ngram(LM_TEXT, NGramConfig(order=3)).write_arpa(d / "word3.arpa")
    train_ngram(LM_TEXT, NGramConfig(order=6, units="char")).write_arpa(d / "char6.arpa")
    write_lexicon(train_ngram(LM_TEXT, NGramConfig(order=1)).words(), d / "words.lex")
    vocab = Vocabulary.build(LM_TEXT, "word")
    torch.manual_seed(1)
    lm_cfg = RNNLMConfig(vocab_size=len(vocab), embed=16, hidden=16, layers=1, dropout=0.0)
    save_release(d / "rnnlm", LSTMLM(lm_cfg).state_dict(), to_dict(lm_cfg), kind="rnnlm",
                 copy_files={"vocab.txt": vocab.save(d / "vocab.txt")})
    model, model_cfg, feat_cfg = small_model()
    save_speech_release(d / "acoustic", model.state_dict(), model_cfg, feat_cfg, None, TOKENS)
    return d


def test_release_round_trip_decodes_the_same(files, tmp_path):
    release = tmp_path / "release"
    shutil.copytree(files / "acoustic", release)
    assert load_speech_release(release).beam_config is None and load_speech_release(release).rescorer_dir is None
    cfg = BeamConfig(lexicon="words.lex", lm="word3.arpa", lm_weight=1.0, word_score=-0.5, nbest=3,
                     rescore_weight=0.7, rescore_length_bonus=0.25)
    add_decoder(release, cfg, base_dir=files, rnnlm=files / "rnnlm")
    saved = json.loads((release / "decoder.json").read_text())
    assert saved["lexicon"] == "lexicon.txt" and saved["lm"] == "lm.arpa"  # relative to the release
    assert {p.name for p in (release / "rnnlm").iterdir()} == {"model.pt", "config.json", "vocab.txt"}

    asr = load_speech_release(release)
    assert Path(asr.beam_config.lm).is_absolute() and Path(asr.beam_config.lm) == (release / "lm.arpa").resolve()
    assert Path(asr.beam_config.lexicon) == (release / "lexicon.txt").resolve()
    assert asr.rescorer_dir == (release / "rnnlm").resolve()
    assert dataclasses.replace(asr.beam_config, lexicon=cfg.lexicon, lm=cfg.lm) == cfg

    x = torch.cat([ambiguous("i", "books"), ambiguous("i", "books")])  # (2, T, V)
    lens = torch.tensor([x.shape[1], x.shape[1] - 6])
    direct = BeamSearchDecoder(TOKENS, cfg, base_dir=files)(x, lens)
    assert direct[0][0].text == "i read books"
    beam = asr.decode(x, lens, "beam")
    assert [h.text for h in beam] == [n[0].text for n in direct]
    assert [h.score for h in beam] == [n[0].score for n in direct]
    expected = rescore_nbest(direct, load_rnnlm(files / "rnnlm"), weight=0.7, length_bonus=0.25)
    assert [h.text for h in asr.decode(x, lens, "rescore")] == [h.text for h in expected]
    assert [h.text for h in asr.decode(x, lens, "greedy")] == ["i red books", "i red"]

    # Lexicon-free replaces the word files; a release missing a named file is refused with the file's name.
    add_decoder(release, BeamConfig(lm=str(files / "char6.arpa"), lm_weight=1.0))
    assert not (release / "lexicon.txt").exists() and load_speech_release(release).beam_config.lexicon == ""
    assert load_speech_release(release).decode(x[:1], lens[:1], "beam")[0].text == "i read books"
    (release / "lm.arpa").unlink()
    with pytest.raises(ReleaseError, match="lm.arpa"):
        load_speech_release(release)
    (release / "decoder.json").write_text('{"lm_weight": 1.0, "beam_size": 0}')
    with pytest.raises(ReleaseError, match="decoder.json"):
        load_speech_release(release)
    with pytest.raises(ValueError, match="rescore_weight"):
        add_decoder(files / "acoustic", BeamConfig(rescore_weight=0.5))


def test_decoder_json_cannot_point_outside_its_release(files, tmp_path):
    """`../` or a symbolic link out of the release is refused in one line, even when the file outside exists."""
    release = tmp_path / "release"
    shutil.copytree(files / "acoustic", release)
    shutil.copyfile(files / "word3.arpa", tmp_path / "outside.arpa")
    for lm in ("../outside.arpa", "sub/../../outside.arpa", "link.arpa"):
        if lm == "link.arpa":
            (release / "link.arpa").symlink_to(tmp_path / "outside.arpa")
        (release / "decoder.json").write_text(json.dumps({"lm": lm, "lm_weight": 1.0}))
        with pytest.raises(ReleaseError, match="must be a file inside the release directory") as e:
            load_speech_release(release)
        assert "\n" not in str(e.value) and lm in str(e.value)
    (release / "decoder.json").write_text(json.dumps({"lexicon": str(files / "words.lex")}))
    with pytest.raises(ReleaseError, match="inside the release directory"):
        load_speech_release(release)
    shutil.copyfile(files / "word3.arpa", release / "lm.arpa")
    (release / "decoder.json").write_text(json.dumps({"lm": "./lm.arpa", "lm_weight": 1.0}))
    assert Path(load_speech_release(release).beam_config.lm) == (release / "lm.arpa").resolve()


def test_export_with_decoder_and_rnnlm(files, tmp_path):
    model, model_cfg, feat_cfg = small_model()
    state = {"format_version": FORMAT_VERSION, "model": model.state_dict(), "extra": {"feature_stats": None},
             "config": {"model": to_dict(model_cfg), "features": feat_cfg.to_dict(), "data": {"tokens": "chars"}},
             "loop": {"step": 7, "epoch": 1}}
    torch.save(state, tmp_path / "ckpt.pt")
    BeamConfig(lexicon="words.lex", lm="word3.arpa", lm_weight=1.5, rescore_weight=0.3).save(files / "tuned.json")
    out = recipe("export").main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "rel"),
                                 "--decoder", str(files / "tuned.json"), "--rnnlm", str(files / "rnnlm")])
    asr = load_speech_release(out)
    assert asr.beam_config.lm_weight == 1.5 and asr.beam_config.rescore_weight == 0.3
    assert (out / "lm.arpa").read_bytes() == (files / "word3.arpa").read_bytes()
    x = ambiguous("i", "books")
    assert asr.decode(x, torch.tensor([x.shape[1]]), "beam")[0].text == "i read books"
    with pytest.raises(SystemExit):
        recipe("export").main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "r2"),
                               "--lm", str(files / "word3.arpa")])  # weights are needed with an LM


def test_search_picks_the_lm_weight_that_fixes_the_ambiguity(files):
    tune = recipe("tune_decoder")
    dev = tune.DevSet([ambiguous("i", "books")[0], ambiguous("the", "car")[0]], ["i read books", "the red car"], 1.0)
    base = BeamConfig(lexicon=str(files / "words.lex"), lm=str(files / "word3.arpa"), nbest=5)
    cfg, result, history, nbests = tune.tune_mode(dev, TOKENS, base, {"lm_weight": [0.0, 1.0], "word_score": [0.0]},
                                                  rounds=2, label="test")
    assert cfg.lm_weight == 1.0 and result["wer"] == 0.0
    assert [(h["lm_weight"], h["wer"]) for h in history] == [(1.0, 0.0), (0.0, pytest.approx(1 / 6))]
    assert nbests[0][0].text == "i read books"
    # Rescoring's grid: the weight that lets the LM overturn a first-pass error wins; ties keep the smaller weight.
    nbest = [[Hypothesis([], [], "i red books", -10.0), Hypothesis([], [], "i read books", -10.4)]]
    one = tune.DevSet([torch.zeros(1, 29)], ["i read books"], 1.0)
    best, grid = tune.tune_rescoring(one, nbest, [[-5.0, -1.0]], [0.0, 0.5, 1.0], [0.0])
    assert best["weight"] == 0.5 and best["wer"] == 0.0
    assert [g["wer"] for g in grid] == [pytest.approx(1 / 3), 0.0, 0.0]


def test_tune_decoder_recipe_writes_what_evaluate_reproduces(files, tmp_path):
    manifest = tmp_path / "dev.jsonl"
    lines = []
    for i, (seconds, text) in enumerate([(1.2, "i read books"), (0.9, "the red car"), (1.5, "you read the letter")]):
        write_audio(tmp_path / f"u{i}.wav", seconds)
        lines.append(json.dumps({"audio": str(tmp_path / f"u{i}.wav"), "duration": seconds, "text": text}))
    manifest.write_text("\n".join(lines) + "\n")
    args = ["--model", str(files / "acoustic"), "--out", str(tmp_path / "rel"), "--manifest", str(manifest),
            "--max-utts", "2", "--lexicon", str(files / "words.lex"), "--word-lm", str(files / "word3.arpa"),
            "--char-lm", str(files / "char6.arpa"), "--rnnlm", str(files / "rnnlm"), "--lm-weights", "0.5,2",
            "--word-scores", "0,5", "--char-lm-weights", "0,1", "--sil-scores", "0", "--rescore-weights", "0,1",
            "--length-bonuses", "0", "--rounds", "1", "--cache", str(tmp_path / "cache.pt"), "--beam-size", "8"]
    tune = recipe("tune_decoder")
    report = tune.main(args)
    assert report["utterances"] == 2 and set(report) >= {"greedy", "lexicon", "lexicon-free", "rescore", "written"}
    assert len(report["lexicon"]["history"]) == 3 and len(report["rescore"]["history"]) == 2
    assert json.loads((tmp_path / "rel" / "tuning.json").read_text())["written"] == report["written"]
    assert not (files / "acoustic" / "decoder.json").exists()  # --out got a copy; the source is untouched

    asr = load_speech_release(tmp_path / "rel")
    written = report[report["written"]]["config"]
    assert asr.beam_config.mode == report["written"] and asr.beam_config.lm_weight == written["lm_weight"]
    assert asr.beam_config.rescore_weight == report["rescore"]["weight"]
    results = recipe("evaluate").evaluate_manifest(asr, manifest, limit=2, decoders=("greedy", "beam", "rescore"))
    assert [r["decoder"] for r in results] == ["greedy", "beam", "rescore"]
    assert results[0]["wer"] == report["greedy"]["wer"]
    tuned = report[report["written"]]
    assert results[1]["wer"] == tuned["wer"] and results[1]["cer"] == tuned["cer"]
    assert results[2]["wer"] == report["rescore"]["wer"]
    assert all(r["rtf"] >= r["am_rtf"] > 0 for r in results)
    again = tune.main(args)  # second run: log-probabilities from the cache, same search
    pick = lambda r: [(h["lm_weight"], h["word_score"], h["wer"], h["cer"]) for h in r["lexicon"]["history"]]  # noqa: E731
    assert pick(again) == pick(report)


def test_several_dev_manifests_are_interleaved_one_sentence_one_condition(tmp_path):
    """--manifest dev,dev_noisy,...: utterance i is entry i of manifest i mod k, so the conditions share the tuning set
    equally and no sentence is heard twice; the shortest manifest bounds it, --max-utts cuts it."""
    tune = recipe("tune_decoder")
    paths = []
    for cond, n in (("clean", 5), ("noisy", 5), ("phone", 4)):
        path = tmp_path / f"dev_{cond}.jsonl"
        path.write_text("".join(json.dumps({"audio": f"{cond}{i}.wav", "duration": 1.0, "text": f"sentence {i}"})
                                + "\n" for i in range(n)))
        paths.append(str(path))
    picked = [(Path(e.audio).name, e.text) for e in tune.dev_entries(paths, 0)]
    assert picked == [("clean0.wav", "sentence 0"), ("noisy1.wav", "sentence 1"), ("phone2.wav", "sentence 2"),
                      ("clean3.wav", "sentence 3")]
    assert [Path(e.audio).name for e in tune.dev_entries(paths, 2)] == ["clean0.wav", "noisy1.wav"]
    assert [Path(e.audio).name for e in tune.dev_entries(paths[:1], 3)] == ["clean0.wav", "clean1.wav", "clean2.wav"]


def test_add_decoder_takes_the_rnnlm_of_a_shipped_archive(files, tmp_path):
    """An archive stores rnnlm/ weights as model.safetensors (speechdraw/models.py): tune_decoder.py --rnnlm on a
    shipped model's rnnlm/ must copy that file, not look for model.pt."""
    from safetensors.torch import save_file

    shipped = tmp_path / "shipped-rnnlm"
    shutil.copytree(files / "rnnlm", shipped)
    sd = torch.load(shipped / "model.pt", weights_only=True)
    save_file({k: v.half().contiguous() for k, v in sd.items()}, str(shipped / "model.safetensors"))
    (shipped / "model.pt").unlink()
    release = tmp_path / "release"
    shutil.copytree(files / "acoustic", release)
    add_decoder(release, BeamConfig(lexicon="words.lex", lm="word3.arpa", rescore_weight=0.5), base_dir=files,
                rnnlm=shipped)
    assert {p.name for p in (release / "rnnlm").iterdir()} == {"model.safetensors", "config.json", "vocab.txt"}
    assert load_speech_release(release).rescorer_dir == (release / "rnnlm").resolve()
