"""Decoding with language models on every synthetic test set: WER/CER for greedy, beam + word n-gram (lexicon),
beam + word n-gram + LSTM rescoring, and lexicon-free beam + character n-gram, with the weights tune_decoder.py chose
on dev; per group of utterances (SNR and noise kind, RT60 band, phone codec, voice variant); real-time factors, ARPA
load time, LM perplexities / OOV rate and training times; issue 13's target checks.

    python recipes/asr/tune_decoder.py --model REL --lexicon ... --word-lm ... --char-lm ... --rnnlm ...  # first
    python bench/asr_decode.py --model REL --lm-dir ~/speechdraw-runs/lm --baseline OLD_asr_decode.json
    python bench/asr_decode.py --model REL --max-utts 50 --results-dir /tmp/trial --allow-dirty   # a quick look

Sets (bench/asr_sets.py; a missing manifest is skipped with a note): test, test_accent, test_voice, test_noisy (and
its mean over SNRs), test_reverb, test_phone; --max-utts takes the same seeded random lines of each. Targets (in
"targets"): test_accent word-LM WER <= 7%; test_voice greedy CER <= 15%; word-LM WER on test_noisy (mean over SNRs),
test_reverb and test_phone each <= 2x test's; with --baseline (the replaced model's asr_decode record): test's greedy
CER and word-LM WER within 10% of its figures, each harder set's word-LM WER at least 40% below its figure.

The release must hold decoder.json, rnnlm/ and tuning.json (all written by tune_decoder.py). The mode in
decoder.json decodes from the release's files; the other mode's tuned settings (and LM path) come from tuning.json.
Each test set is decoded once per decoder. The acoustic model runs once per test set (its time is am_rtf); each
decoder's decode_rtf is its own time on those log-probabilities, rtf = am_rtf + decode_rtf; the rescoring pass is
timed on top of the lexicon beam search it re-ranks. Threads: --threads (default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr_sets import (  # noqa: E402
    TEST_SETS,
    add_set_arguments,
    baseline_figure,
    group_figures,
    load_sets,
    resolve_set_arguments,
    target_checks,
)
from record import load_recipe, parse_bench_args, write_record  # noqa: E402

from speechdraw.asr.beam import BeamConfig, BeamSearchDecoder, decoder_tokens  # noqa: E402
from speechdraw.asr.decode import greedy_decode  # noqa: E402
from speechdraw.asr.lm.ngram import NGramLM, read_sentences  # noqa: E402
from speechdraw.asr.lm.rnnlm import evaluate as lstm_evaluate  # noqa: E402
from speechdraw.asr.lm.rnnlm import rescore_nbest  # noqa: E402
from speechdraw.asr.release import load_speech_release  # noqa: E402

SYNTH = Path.home() / "speechdraw-runs" / "data" / "synth"



def kenlm_load_seconds(arpa: str, units: list[str]) -> float:
    """Median of 3: flashlight's KenLM reading the ARPA file alone."""
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import create_word_dict

    dictionary = create_word_dict({u: [[u]] for u in [*units, "<unk>", "</s>"]})
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        KenLM(arpa, dictionary)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def decode_rows(decode, log_probs: list[torch.Tensor], batch: int = 32) -> tuple[list, float]:
    """decode((B, T, V), (B,)) -> hypotheses, over the utterances in batches (padded); -> (outputs, seconds)."""
    out, seconds = [], 0.0
    for i in range(0, len(log_probs), batch):
        chunk = log_probs[i : i + batch]
        lens = torch.tensor([x.shape[0] for x in chunk])
        x = torch.zeros(len(chunk), int(lens.max()), chunk[0].shape[1])
        for b, lp in enumerate(chunk):
            x[b, : lp.shape[0]] = lp
        t0 = time.perf_counter()
        out += decode(x, lens)
        seconds += time.perf_counter() - t0
    return out, seconds


def row(tune, dev, texts: list[str], seconds: float) -> dict:
    """WER/CER of `texts` on `dev`, and the real-time factors of a decoder that took `seconds`."""
    r = tune.error_rates(dev.texts, texts)
    am_rtf, decode_rtf = dev.am_seconds / dev.seconds, seconds / dev.seconds
    return {"wer": round(r["wer"], 4), "cer": round(r["cer"], 4), "decode_rtf": round(decode_rtf, 5),
            "rtf": round(am_rtf + decode_rtf, 5)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="speech release with decoder.json, rnnlm/, tuning.json (required)")
    add_set_arguments(ap, ",".join(TEST_SETS), SYNTH)
    ap.add_argument("--lm-dir", default="~/speechdraw-runs/lm", help="where train_ngram.py --report wrote "
                    "word4.json / char6.json (n-gram training times) (default: ~/speechdraw-runs/lm)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--name", default="asr_decode", help="record name (default: asr_decode)")
    ap.add_argument("--notes", default="", help="extra notes for the record")
    args = parse_bench_args(ap)
    baseline, subset = resolve_set_arguments(ap, args)
    torch.set_num_threads(args.threads)
    tune = load_recipe("asr", "tune_decoder")
    asr = load_speech_release(args.model)
    if asr.beam_config is None or asr.rescorer_dir is None or not (asr.dir / "tuning.json").is_file():
        raise SystemExit(f"{args.model}: needs decoder.json, rnnlm/ and tuning.json: run recipes/asr/tune_decoder.py")
    tuning = json.loads((asr.dir / "tuning.json").read_text())
    configs = {}  # mode -> BeamConfig with absolute paths
    for mode in ("lexicon", "lexicon-free"):
        if asr.beam_config.mode == mode:
            configs[mode] = asr.beam_config
        elif mode in tuning:
            configs[mode] = BeamConfig(**tuning[mode]["config"])
    if "lexicon" not in configs:
        raise SystemExit(f"{args.model}: tuning.json has no lexicon-mode settings (tune with --word-lm)")
    decoders = {mode: BeamSearchDecoder(asr.tokens, cfg) for mode, cfg in configs.items()}
    scorer = asr.rescorer()
    rescore_cfg = asr.beam_config  # the rescoring weights were tuned on the N-best lists of the written mode
    if rescore_cfg.mode != "lexicon":
        print("note: decoder.json is lexicon-free, so the rescoring row re-ranks lexicon-free N-best lists")

    figures: dict = {
        "model": f"{asr.model_config.layers} x {asr.model_config.hidden} BiLSTM-CTC, "
                 f"{asr.model.num_params() / 1e6:.2f} M params, checkpoint step {asr.config['metrics'].get('step')}",
        "tuned_on": {"manifest": tuning["manifest"], "utterances": tuning["utterances"],
                     "dev_wer_greedy": round(tuning["greedy"]["wer"], 4)},
        "settings": {mode: {k: getattr(cfg, k) for k in ("lm_weight", "word_score", "sil_score", "beam_size",
                                                         "beam_threshold", "nbest")} for mode, cfg in configs.items()},
        "rescore": {"weight": rescore_cfg.rescore_weight, "length_bonus": rescore_cfg.rescore_length_bonus,
                    "rescores": f"{rescore_cfg.mode} {rescore_cfg.nbest}-best"},
    }
    for mode in configs:
        figures["settings"][mode]["dev_wer"] = round(tuning[mode]["wer"], 4) if mode in tuning else None
    if "rescore" in tuning:
        figures["rescore"]["dev_wer"] = round(tuning["rescore"]["wer"], 4)

    if subset:
        figures["subset"] = subset
    with tempfile.TemporaryDirectory() as tmp:
        found, skipped = load_sets(Path(args.corpus), args.sets.split(","), args.max_utts, args.subset_seed, Path(tmp))
        for ts in found:
            dev = tune.compute_dev(asr, [str(ts.manifest)], 0, None)
            rows, texts = {}, {}

            hyps, s = decode_rows(lambda x, n: greedy_decode(x, n, asr.tokens), dev.log_probs)
            texts["greedy"] = [h.text for h in hyps]
            rows["greedy"] = row(tune, dev, texts["greedy"], s)
            nbests, beam_seconds = {}, {}
            for mode, decoder in decoders.items():
                nbests[mode], s = decode_rows(decoder, dev.log_probs)
                beam_seconds[mode] = s
                key = "beam_word_ngram" if mode == "lexicon" else "beam_char_ngram"
                texts[key] = [n[0].text if n else "" for n in nbests[mode]]
                rows[key] = row(tune, dev, texts[key], s)
            t0 = time.perf_counter()
            best = rescore_nbest(nbests[rescore_cfg.mode], scorer, weight=rescore_cfg.rescore_weight,
                                 length_bonus=rescore_cfg.rescore_length_bonus)
            s = time.perf_counter() - t0 + beam_seconds[rescore_cfg.mode]
            key = "beam_word_ngram_lstm" if rescore_cfg.mode == "lexicon" else "beam_char_ngram_lstm"
            texts[key] = [h.text if h is not None else "" for h in best]
            rows[key] = row(tune, dev, texts[key], s)
            g, w = rows["greedy"]["wer"], rows["beam_word_ngram"]["wer"]
            figures[ts.name] = {"utterances": len(dev.texts), "of_utterances": ts.lines,
                                "hours": round(dev.seconds / 3600, 3), "am_rtf": round(dev.am_seconds / dev.seconds, 5),
                                **rows, "word_ngram_relative_wer_reduction": round((g - w) / g, 4) if g else None,
                                **group_figures(ts.entries, texts)}
            print(ts.name, json.dumps({k: v for k, v in figures[ts.name].items() if k != "groups"}), flush=True)
        if skipped:
            figures["skipped_sets"] = skipped
        sets = {ts.name: figures[ts.name] for ts in found}

        # Language models: OOV rate and perplexity on each decoded set's sentences (test_voice and the harder sets
        # repeat test's: scored once), load and training times.
        distinct, seen = [], set()
        for ts in found:
            sentences = tuple(sorted(e.text for e in ts.entries))
            if sentences not in seen:
                seen.add(sentences)
                distinct.append(ts)
        lm_dir = Path(os.path.expanduser(args.lm_dir))
        lms: dict = {}
        for mode, key, report in (("lexicon", "word_ngram", "word4.json"),
                                  ("lexicon-free", "char_ngram", "char6.json")):
            if mode not in configs:
                continue
            arpa = configs[mode].lm
            lm = NGramLM.read_arpa(arpa)
            f = {"arpa": arpa, "units": lm.units, "order": lm.order, "ngrams": lm.counts,
                 "arpa_mb": round(Path(arpa).stat().st_size / 1e6, 1),
                 "kenlm_load_seconds": round(kenlm_load_seconds(arpa, lm.vocab[3:] if lm.units == "word"
                                                                else decoder_tokens(asr.tokens)), 3),
                 "decoder_build_seconds": round(statistics.median(
                     BeamSearchDecoder(asr.tokens, configs[mode]).load_seconds for _ in range(3)), 3)}
            for ts in distinct:
                ev = lm.evaluate(read_sentences([ts.manifest]))
                f[f"{ts.name}_oov_rate"] = round(ev.oov_rate, 5)
                f[f"{ts.name}_perplexity"] = round(ev.perplexity, 3)
            if (lm_dir / report).is_file():
                f["train_seconds"] = round(json.loads((lm_dir / report).read_text())["train_seconds"], 2)
            lms[key] = f
        lstm_release = json.loads((asr.rescorer_dir / "config.json").read_text())
        f = {"model": lstm_release["model"], "train_seconds": round(lstm_release["metrics"]["train_seconds"], 1),
             "steps": lstm_release["metrics"]["steps"]}
        for ts in distinct:
            ev = lstm_evaluate(scorer.model, scorer.vocab, read_sentences([ts.manifest]))
            f[f"{ts.name}_perplexity"] = round(ev.perplexity_with_oov, 3)
            f[f"{ts.name}_oov_rate"] = round(ev.oov_rate, 5)
        lms["lstm"] = f
    figures["lms"] = lms
    test = figures.get("test", {})
    if test:
        figures["target_test_wer_word_ngram_at_most_0.05"] = test["beam_word_ngram"]["wer"] <= 0.05
        figures["target_relative_wer_reduction_at_least_0.2"] = (test["word_ngram_relative_wer_reduction"] or 0) >= 0.2
        figures["target_rescoring_improves"] = test.get("beam_word_ngram_lstm", {}).get("wer", 1.0) < \
            test["beam_word_ngram"]["wer"]
    figures["targets"] = target_checks(sets, baseline)
    if baseline:
        figures["baseline"] = baseline_figure(baseline, subset)
    write_record(args.name, figures, allow_dirty=args.allow_dirty,
                 title="ASR decoding with language models on the synthetic test sets (CPU)",
                 notes="Weights tuned on dev by recipes/asr/tune_decoder.py (settings, dev_wer); each test set decoded "
                       "once per decoder. rtf = am_rtf (features + acoustic model, once per set) + decode_rtf. The "
                       "rescoring row's decode_rtf includes the beam search it re-ranks. n-gram perplexity: OOV words "
                       "skipped (SRILM convention); LSTM perplexity: every word, rare ones as <unk>. "
                       "decoder_build_seconds: torchaudio ctc_decoder construction (KenLM load + lexicon trie). "
                       + args.notes, results_dir=Path(args.results_dir) if args.results_dir else None)


if __name__ == "__main__":
    main()
