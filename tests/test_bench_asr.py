"""bench/asr_quality.py and bench/asr_decode.py on every test set: the grouping and target arithmetic of
bench/asr_sets.py on hand-made inputs, then both scripts end to end on a real miniature corpus (espeak-ng, flite and
festival speech with its noisy/reverberant/phone copies, built by data_prep/synth_speech.py) and a small untrained
release with a tuned decoder, and BENCHMARKS.md's rendering of what they wrote."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from asr_fixtures import prep, recipe
from conftest import REPO, run_script

from speechdraw.asr.beam import write_lexicon
from speechdraw.asr.features import FeatureConfig
from speechdraw.asr.lm.ngram import NGramConfig, train_ngram
from speechdraw.asr.lm.rnnlm import LSTMLM, RNNLMConfig, Vocabulary
from speechdraw.asr.manifest import ManifestEntry, read_manifest
from speechdraw.asr.model import AcousticModel, AcousticModelConfig
from speechdraw.asr.release import save_speech_release
from speechdraw.asr.text import TokenSet
from speechdraw.engine.config import to_dict
from speechdraw.engine.release import save_release

sys.path.insert(0, str(REPO / "bench"))
import asr_sets  # noqa: E402
import asr_targets  # noqa: E402
import make_benchmarks_md  # noqa: E402

HARDER = ("test_noisy", "test_reverb", "test_phone")


def noisy(text: str, snr: int, noise: str) -> ManifestEntry:
    return ManifestEntry("x.flac", 1.0, text, "en-us+m7", extra={"noise": noise, "snr_db": snr, "source": "t"})


def test_groups_are_corpus_totals_and_noisy_gets_the_mean_over_snrs():
    entries = [noisy("a b c d", 0, "babble"), noisy("a b", 0, "siren"), noisy("a b c d", 10, "babble"),
               noisy("a b c d e", 5, "siren")]
    hyps = {"greedy": ["a x c d", "", "a b c d", "a b c d e"]}  # word errors 1/4, 2/2, 0/4, 0/5
    f = asr_sets.group_figures(entries, hyps)
    snr = f["groups"]["snr_db"]
    assert list(snr) == ["0", "5", "10"]  # numeric order, not "0", "10", "5"
    assert snr["0"] == {"utterances": 2, "greedy": {"wer": 0.5, "cer": round(4 / 10, 4)}}  # (1 + 2) / 6 words
    assert snr["10"]["greedy"]["wer"] == 0.0 and snr["5"]["utterances"] == 1
    assert f["groups"]["noise"]["siren"]["greedy"]["wer"] == round(2 / 7, 4)
    assert f["snr_mean"]["greedy"]["wer"] == round((0.5 + 0 + 0) / 3, 4)  # mean of the groups, not pooled (3 / 15)
    assert "variant" not in f["groups"]

    phone = ManifestEntry("x", 1.0, "a b", "en-us+m7", extra={"phone_codec": "gsm", "codec": "opus", "rt60": 0.5})
    clean = ManifestEntry("x", 1.0, "a b", "en-gb-scotland+f3")
    assert asr_sets.group_keys(phone) == {"phone_codec": "gsm", "codec": "opus", "rt60_s": "0.5-0.75"}
    assert asr_sets.group_keys(clean) == {"variant": "f3"}
    assert [asr_sets.rt60_band(x) for x in (0.3, 0.499, 1.0, 1.2)] == ["0.3-0.5", "0.3-0.5", "0.75-1", "other"]
    assert "snr_mean" not in asr_sets.group_figures([phone, clean], {"greedy": ["a b", "a"]})


def test_subset_is_seeded_random_and_the_same_lines_in_equal_sets():
    pick = asr_sets.subset_indices(1000, 50, seed=0)
    assert pick == sorted(pick) and len(set(pick)) == 50 and pick != list(range(50))
    assert asr_sets.subset_indices(1000, 50, seed=0) == pick != asr_sets.subset_indices(1000, 50, seed=1)
    assert asr_sets.subset_indices(10, 0, 3) == asr_sets.subset_indices(10, 20, 3) == list(range(10))


def figure(greedy_cer, word_wer, **extra):
    return {"greedy": {"wer": 0.5, "cer": greedy_cer}, "beam_word_ngram": {"wer": word_wer, "cer": 0.1}, **extra}


def test_target_checks_on_hand_made_figures():
    sets = {"test": figure(0.03, 0.05), "test_accent": figure(0.08, 0.07), "test_voice": figure(0.151, 0.3),
            "test_noisy": figure(0.2, 0.5, snr_mean={"beam_word_ngram": {"wer": 0.1, "cer": 0.05}}),
            "test_reverb": figure(0.1, 0.1001), "test_phone": figure(0.1, 0.08)}
    old = {"test": {"greedy": {"wer": 0.2, "cer": 0.0275}, "beam_word_ngram": {"wer": 0.05, "cer": 0.02}},
           "test_noisy": {"beam_word_ngram": {"wer": 0.9}, "snr_mean": {"beam_word_ngram": {"wer": 0.16}}},
           "test_reverb": {"beam_word_ngram": {"wer": 0.2}}}
    t = asr_sets.target_checks(sets, {"sets": old})
    verdict = {k: v["pass"] for k, v in t.items()}
    assert verdict == {
        "test_voice_greedy_cer_at_most_0.15": False,  # 0.151
        "test_accent_word_lm_wer_at_most_0.07": True,  # 0.07 exactly
        "test_noisy_word_lm_wer_at_most_2x_test": True,  # the SNR mean 0.1, not the pooled 0.5
        "test_reverb_word_lm_wer_at_most_2x_test": False,  # 0.1001 > 0.1
        "test_phone_word_lm_wer_at_most_2x_test": True,
        "test_greedy_cer_within_10pct_of_baseline": True,  # 0.03 <= 1.1 x 0.0275 = 0.03025
        "test_word_lm_wer_within_10pct_of_baseline": True,
        "test_noisy_word_lm_wer_40pct_below_baseline": False,  # 0.1 > 0.6 x 0.16 = 0.096 (SNR mean vs SNR mean)
        "test_reverb_word_lm_wer_40pct_below_baseline": True,  # 0.1001 <= 0.12
        "test_phone_word_lm_wer_40pct_below_baseline": None,  # the baseline has no test_phone
    }
    assert t["test_noisy_word_lm_wer_at_most_2x_test"]["limit"] == 0.1
    assert t["test_noisy_word_lm_wer_40pct_below_baseline"] == {
        "value": 0.1, "limit": 0.096, "pass": False, "baseline": 0.16,
        "rule": "test_noisy WER, beam + word n-gram, <= 0.6 x the baseline's"}
    assert "no test_phone" in t["test_phone_word_lm_wer_40pct_below_baseline"]["note"]
    # A greedy-only run (asr_quality) gets only the greedy checks; a missing set is a check without a verdict.
    greedy_only = {"test": {"greedy": {"wer": 0.2, "cer": 0.03}}}
    t = asr_sets.target_checks(greedy_only)
    assert t == {"test_voice_greedy_cer_at_most_0.15": {"pass": None, "rule": "test_voice greedy CER <= 0.15",
                                                        "note": "test_voice not scored"}}


def test_baseline_records_of_every_layout(tmp_path):
    flat = {"name": "asr_quality", "figures": {"test_cer": 0.0334, "test_wer": 0.1187, "test_accent_cer": 0.0783,
                                               "test_accent_wer": 0.2554, "dev_cer_by_epoch": [0.5, 0.1],
                                               "test_char_sub_del_ins": [0.01, 0.01, 0.01]}}
    (tmp_path / "flat.json").write_text(json.dumps(flat))
    b = asr_sets.read_baseline(str(tmp_path / "flat.json"))
    assert b["sets"] == {"test": {"greedy": {"cer": 0.0334, "wer": 0.1187}},
                         "test_accent": {"greedy": {"cer": 0.0783, "wer": 0.2554}}}
    decode = json.loads((REPO / "bench" / "results" / "asr_decode.json").read_text())
    (tmp_path / "decode.json").write_text(json.dumps(decode))
    assert asr_sets.read_baseline(str(tmp_path / "decode.json"))["sets"]["test"]["beam_word_ngram"]["wer"] == \
        decode["figures"]["test"]["beam_word_ngram"]["wer"]
    (tmp_path / "other.json").write_text(json.dumps({"name": "draw", "figures": {"nll": 80.1}}))
    with pytest.raises(ValueError, match="other.json: no per-set error rates"):
        asr_sets.read_baseline(str(tmp_path / "other.json"))


def test_targets_between_two_records_on_disk(tmp_path, capsys):
    """bench/asr_targets.py: the same checks as target_checks, read from two records written at different times."""
    new = {"test": figure(0.03, 0.05), "test_reverb": figure(0.1, 0.09), "test_phone": figure(0.1, 0.0999),
           "test_noisy": figure(0.2, 0.5, snr_mean={"beam_word_ngram": {"wer": 0.08}}), "subset": None}
    old = {"test": figure(0.03, 0.05), "test_reverb": figure(0.2, 0.15), "test_phone": figure(0.2, 0.1664),
           "test_noisy": figure(0.2, 0.9, snr_mean={"beam_word_ngram": {"wer": 0.2}}),
           "subset": {"max_utts": 300, "seed": 0}}
    for name, figures in (("new", new), ("old", old)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"name": f"asr_decode_{name}", "figures": figures}))
    out = asr_targets.main(["--record", str(tmp_path / "new.json"), "--baseline", str(tmp_path / "old.json"),
                            "--results-dir", str(tmp_path / "results"), "--allow-dirty"])
    verdict = {k: v["pass"] for k, v in out["targets"].items() if k.endswith("baseline")}
    assert verdict == {
        "test_greedy_cer_within_10pct_of_baseline": True,
        "test_word_lm_wer_within_10pct_of_baseline": True,
        "test_noisy_word_lm_wer_40pct_below_baseline": True,  # 0.08 <= 0.6 x 0.2 (the SNR means)
        "test_reverb_word_lm_wer_40pct_below_baseline": True,  # 0.09 <= 0.09
        "test_phone_word_lm_wer_40pct_below_baseline": False,  # 0.0999 > 0.6 x 0.1664 = 0.0998
    }
    assert out["all_pass"] is False
    assert "different utterances" in out["baseline"]["note"]  # the baseline scored a subset, the new model all
    written = json.loads((tmp_path / "results" / "asr_targets.json").read_text())
    assert written["figures"]["targets"] == out["targets"] and written["name"] == "asr_targets"
    (tmp_path / "draw.json").write_text(json.dumps({"name": "draw", "figures": {"nll": 80.1}}))
    with pytest.raises(SystemExit, match="draw.json: no per-set error rates"):
        asr_targets.main(["--record", str(tmp_path / "draw.json"), "--baseline", str(tmp_path / "old.json"),
                          "--allow-dirty"])


# ---------------------------------------------------------------------------------------------------------------------
# The scripts end to end

needs_synths = pytest.mark.skipif(any(shutil.which(c) is None for c in ("espeak-ng", "flite", "text2wave")),
                                  reason="apt-get install -y espeak-ng flite festival festvox-kallpc16k")
TEXT = """The quick brown fox jumps over the lazy dog near the river bank. She sold twelve sea shells by the sea shore.
Peter Piper picked a peck of pickled peppers yesterday. How much wood would a woodchuck chuck today?
A journey of a thousand miles begins with a single step. All that glitters is not gold, they say.
The early bird catches the worm but the second mouse gets the cheese. Every good boy deserves fudge and milk.
Actions speak louder than words in almost every situation. Better late than never, said the old man slowly.
Birds of a feather flock together in the cold northern winter. Fortune favors the bold and the brave.
Where there's smoke there is usually a fire somewhere close. You can't judge a book by its cover alone.
"""


@pytest.fixture(scope="module")
def bench_inputs(tmp_path_factory):
    """A corpus with every set (4 lines each, dev 2) and an untrained release tuned on its dev by tune_decoder.py."""
    d = tmp_path_factory.mktemp("bench_asr")
    (d / "source.txt").write_text(TEXT)
    corpus = d / "synth"
    assert prep("synth_speech").main(["--source", str(d / "source.txt"), "--out", str(corpus), "--hours", "0.001",
                                      "--dev-utts", "2", "--test-utts", "4", "--jobs", "2"]) == 0  # fmt: skip
    text = [e.text for s in ("train", "dev", "test", "test_accent") for e in read_manifest(corpus / f"{s}.jsonl")]
    text += (corpus / "lm_train.txt").read_text().splitlines()
    train_ngram(text, NGramConfig(order=3)).write_arpa(d / "word3.arpa")
    train_ngram(text, NGramConfig(order=4, units="char")).write_arpa(d / "char4.arpa")
    write_lexicon(train_ngram(text, NGramConfig(order=1)).words(), d / "words.lex")
    torch.manual_seed(0)
    vocab = Vocabulary.build(text, "word")
    lm_cfg = RNNLMConfig(vocab_size=len(vocab), embed=8, hidden=8, layers=1, dropout=0.0)
    save_release(d / "rnnlm", LSTMLM(lm_cfg).state_dict(), to_dict(lm_cfg), kind="rnnlm",
                 metrics={"train_seconds": 0.0, "steps": 0}, copy_files={"vocab.txt": vocab.save(d / "vocab.txt")})
    tokens = TokenSet.characters()
    cfg = AcousticModelConfig(n_mels=16, stack=4, hidden=16, layers=1, dropout=0.0, vocab_size=len(tokens) + 1)
    features = FeatureConfig(n_mels=16, cmvn="utterance")
    save_speech_release(d / "acoustic", AcousticModel(cfg).state_dict(), cfg, features, None, tokens,
                        metrics={"step": 0, "weights": "model"})
    recipe("tune_decoder").main([
        "--model", str(d / "acoustic"), "--out", str(d / "release"), "--manifest", str(corpus / "dev.jsonl"),
        "--lexicon", str(d / "words.lex"), "--word-lm", str(d / "word3.arpa"), "--char-lm", str(d / "char4.arpa"),
        "--rnnlm", str(d / "rnnlm"), "--lm-weights", "1", "--word-scores", "0", "--char-lm-weights", "1",
        "--sil-scores", "0", "--rescore-weights", "0.5", "--length-bonuses", "0", "--rounds", "1",
        "--beam-size", "8", "--char-beam-size", "8", "--write", "lexicon"])  # fmt: skip
    # A baseline in the old asr_decode layout: one set the new model beats by far, one it cannot beat.
    baseline = {"name": "asr_decode", "git_commit": "abc", "figures": {
        "test": {"greedy": {"wer": 1.0, "cer": 1.0}, "beam_word_ngram": {"wer": 0.0, "cer": 0.0}},
        "test_reverb": {"beam_word_ngram": {"wer": 50.0, "cer": 50.0}}}}  # fmt: skip
    (d / "baseline.json").write_text(json.dumps(baseline))
    return d


def check_sets(figures: dict, decoders: tuple[str, ...], max_utts: int) -> None:
    for name in asr_sets.TEST_SETS:
        f = figures[name]
        assert (f["utterances"], f["of_utterances"]) == (max_utts, 4) and f["hours"] > 0
        for d in decoders:
            assert 0 < f[d]["cer"] <= 5 and 0 < f[d]["wer"] <= 5  # an untrained model: wrong, but measured
        for groups in f["groups"].values():
            assert sum(g["utterances"] for g in groups.values()) == max_utts
            assert all(set(g) == {"utterances", *decoders} for g in groups.values())
    assert set(figures["test_noisy"]["groups"]) == {"snr_db", "noise"}
    assert set(figures["test_noisy"]["groups"]["snr_db"]) <= {"0", "5", "10", "20"}
    for d in decoders:  # the SNR mean is the mean of the per-SNR figures
        snr = figures["test_noisy"]["groups"]["snr_db"].values()
        assert figures["test_noisy"]["snr_mean"][d]["wer"] == pytest.approx(
            sum(g[d]["wer"] for g in snr) / len(snr), abs=1e-4)
    assert set(figures["test_phone"]["groups"]) == {"phone_codec", "codec"}
    assert set(figures["test_reverb"]["groups"]) == {"rt60_s"}
    # test_voice is one voice: its only group is the whole set
    (voice,) = figures["test_voice"]["groups"]["variant"].values()
    assert all(voice[d] == {k: figures["test_voice"][d][k] for k in ("wer", "cer")} for d in decoders)
    assert figures["subset"]["max_utts"] == max_utts and figures["subset"]["seed"] == 5


@needs_synths
def test_both_benches_score_every_set_and_check_the_targets(bench_inputs, tmp_path):
    d = bench_inputs
    common = ["--model", str(d / "release"), "--corpus", str(d / "synth"), "--max-utts", "3", "--subset-seed", "5",
              "--results-dir", str(tmp_path), "--allow-dirty", "--baseline", str(d / "baseline.json")]
    run_script(["bench/asr_quality.py", *common, "--sets", "test,test_accent,test_voice,test_noisy,test_reverb,"
                "test_phone,dev,test_nosuch"])
    run_script(["bench/asr_decode.py", *common, "--lm-dir", str(tmp_path / "nolm")])
    quality = json.loads((tmp_path / "asr_quality.json").read_text())
    decode = json.loads((tmp_path / "asr_decode.json").read_text())

    q = quality["figures"]
    check_sets(q, ("greedy",), 3)
    assert q["skipped_sets"] == {"test_nosuch": f"no {d / 'synth' / 'test_nosuch.jsonl'}"}
    assert q["dev"]["utterances"] == 2 and set(q["dev"]["groups"]) == {"variant"}
    assert set(q["targets"]) == {"test_voice_greedy_cer_at_most_0.15", "test_greedy_cer_within_10pct_of_baseline",
                                 "test_greedy_cer_at_most_0.05"}
    t = q["targets"]["test_greedy_cer_within_10pct_of_baseline"]
    assert (t["baseline"], t["limit"], t["value"]) == (1.0, 1.1, q["test"]["greedy"]["cer"])
    assert t["pass"] == (t["value"] <= 1.1)
    assert q["targets"]["test_voice_greedy_cer_at_most_0.15"]["value"] == q["test_voice"]["greedy"]["cer"]
    assert q["baseline"]["git_commit"] == "abc" and "different utterances" in q["baseline"]["note"]

    f = decode["figures"]
    decoders = ("greedy", "beam_word_ngram", "beam_char_ngram", "beam_word_ngram_lstm")
    check_sets(f, decoders, 3)
    # The same seeded lines in every set: the harder sets and test_voice are test's sentences, in test's order.
    sentences = {name: [e.text for e in read_manifest(d / "synth" / f"{name}.jsonl")] for name in asr_sets.TEST_SETS}
    pick = asr_sets.subset_indices(4, 3, 5)
    assert all(sentences[n] == sentences["test"] for n in (*HARDER, "test_voice")) and pick != [0, 1, 2]
    assert set(f["lms"]["word_ngram"]) >= {"test_perplexity", "test_accent_perplexity"}
    assert "test_noisy_perplexity" not in f["lms"]["word_ngram"]  # the same sentences as test: scored once
    t = f["targets"]
    test_wer = f["test"]["beam_word_ngram"]["wer"]
    for name in HARDER:
        value = f[name]["snr_mean" if name == "test_noisy" else "beam_word_ngram"]
        value = value["beam_word_ngram"]["wer"] if name == "test_noisy" else value["wer"]
        assert t[f"{name}_word_lm_wer_at_most_2x_test"] == {
            "value": value, "limit": round(2 * test_wer, 4), "pass": value <= round(2 * test_wer, 4),
            "rule": t[f"{name}_word_lm_wer_at_most_2x_test"]["rule"]}
    assert t["test_accent_word_lm_wer_at_most_0.07"]["value"] == f["test_accent"]["beam_word_ngram"]["wer"]
    assert t["test_word_lm_wer_within_10pct_of_baseline"]["pass"] is False  # the baseline's 0 cannot be matched
    assert t["test_reverb_word_lm_wer_40pct_below_baseline"]["pass"] is True  # 60% of 50 is easy
    assert t["test_noisy_word_lm_wer_40pct_below_baseline"]["pass"] is None  # the baseline has no test_noisy

    md = make_benchmarks_md.render([quality, decode])
    assert "| test_noisy · snr_db 0 |" in md or "| test_noisy · snr_db 5 |" in md
    assert "| test_noisy · mean over SNRs |" in md and "| test_phone · codec " in md
    assert "| test_reverb_word_lm_wer_40pct_below_baseline |" in md
    assert "'snr_db'" not in md and "groups" not in md  # no dict dumped into a cell


@needs_synths
def test_bad_options_are_one_line_errors(bench_inputs, tmp_path):
    d = bench_inputs
    base = ["bench/asr_quality.py", "--model", str(d / "release"), "--allow-dirty", "--results-dir", str(tmp_path)]
    for extra, message in ((["--corpus", str(tmp_path / "none")], "not a directory"),
                           (["--corpus", str(d / "synth"), "--sets", "nosuch"], "none of nosuch.jsonl"),
                           (["--corpus", str(d / "synth"), "--max-utts", "-1"], "--max-utts must be >= 0"),
                           (["--corpus", str(d / "synth"), "--baseline", str(d / "rnnlm" / "config.json")],
                            "not a readable benchmark record")):
        proc = run_script([*base, *extra], check=False)
        assert proc.returncode == 2 and message in proc.stderr.splitlines()[-1], proc.stderr
    assert not list(tmp_path.glob("*.json"))
