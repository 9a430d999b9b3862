"""Decode manifests with a speech release and score them: WER and CER as a table and as JSON.

    python recipes/asr/evaluate.py --model ~/speechdraw-runs/asr-cpu/release \\
        --manifest ~/speechdraw-runs/data/synth/test.jsonl ~/speechdraw-runs/data/synth/test_accent.jsonl \\
        --json results.json --per-utt
    python recipes/asr/evaluate.py --model REL --manifest ... --decoder greedy beam rescore

--decoder: greedy; beam = the release's tuned beam search (decoder.json: n-gram LM, lexicon; written by
tune_decoder.py); rescore = beam search, then its N-best list re-ranked with the release's LSTM LM (rnnlm/). Several
decoders share one acoustic-model pass. Error rates are corpus totals (errors / reference length); CER counts spaces as
characters. The real-time factor is compute time / audio duration: am_rtf for features + model, decode_rtf for the
decoder alone, rtf for both (audio file decoding excluded; building the beam decoder, i.e. loading the LM, is reported
apart as decoder_load_seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from speechdraw.asr.audio import load_audio
from speechdraw.asr.decode import align_words
from speechdraw.asr.features import pad_waves
from speechdraw.asr.manifest import read_manifest
from speechdraw.asr.metrics import ErrorRates
from speechdraw.asr.release import DECODERS, load_speech_release
from speechdraw.engine.device import Precision, select_device
from speechdraw.engine.sampler import eval_batches


def evaluate_manifest(asr, manifest: str | Path, *, batch_seconds: float = 600.0, precision: str = "fp32",
                      per_utt: bool = False, word_timings: bool = False, limit: int = 0,
                      decoders: tuple[str, ...] = ("greedy",)) -> dict | list[dict]:
    """Score one manifest with each decoder (one acoustic pass). Returns one result dict per decoder (a single dict
    when `decoders` is the default)."""
    entries = read_manifest(manifest)[:limit or None]
    prec = Precision(precision, asr.device)
    load_seconds = {}
    for d in decoders:  # build the beam decoder / load the LSTM LM before timing anything
        t0 = time.perf_counter()
        if d != "greedy":
            asr.beam_decoder()
        if d == "rescore":
            asr.rescorer()
        load_seconds[d] = time.perf_counter() - t0
    rates = {d: ErrorRates.empty() for d in decoders}
    utts = {d: [None] * len(entries) for d in decoders}
    am, decode = 0.0, dict.fromkeys(decoders, 0.0)
    for idx in eval_batches([e.duration for e in entries], max_total=batch_seconds):
        waves = [load_audio(entries[i].audio, asr.feature_config.sample_rate, offset=entries[i].offset or 0.0,
                            duration=entries[i].duration if entries[i].offset else None) for i in idx]
        t0 = time.perf_counter()
        padded, lens = pad_waves(waves)
        with torch.no_grad():
            feats, flens = asr.features(padded.to(asr.device), lens.to(asr.device))
            with prec.autocast():
                log_probs, out_lens = asr.model(feats, flens)
            log_probs = log_probs.float()
        am += time.perf_counter() - t0
        for d in decoders:
            t0 = time.perf_counter()
            with torch.no_grad():
                hyps = asr.decode(log_probs, out_lens, d)
            decode[d] += time.perf_counter() - t0
            if word_timings:
                align_words(hyps, log_probs, out_lens, asr.tokens, asr.step_times)
            for i, h in zip(idx, hyps):
                w, c = rates[d].add(entries[i].text, h.text)
                if per_utt:
                    utts[d][i] = {"audio": entries[i].audio, "ref": entries[i].text, "hyp": h.text,
                                  "word_errors": w.errors, "words": w.ref_len, "char_errors": c.errors,
                                  "chars": c.ref_len}
                    if word_timings:
                        utts[d][i]["word_timings"] = [[x.word, round(x.start, 3), round(x.end, 3),
                                                       round(x.confidence, 3)] for x in h.words]
    audio = sum(e.duration for e in entries)
    results = []
    for d in decoders:
        r = rates[d]
        result = {
            "manifest": str(manifest), "decoder": d, "utterances": r.utterances, "hours": audio / 3600,
            "cer": r.cer, "wer": r.wer,
            "word_errors": {"sub": r.words.substitutions, "del": r.words.deletions,
                            "ins": r.words.insertions, "ref": r.words.ref_len},
            "char_errors": {"sub": r.chars.substitutions, "del": r.chars.deletions,
                            "ins": r.chars.insertions, "ref": r.chars.ref_len},
            "rtf": (am + decode[d]) / audio if audio else 0.0,
            "am_rtf": am / audio if audio else 0.0,
            "decode_rtf": decode[d] / audio if audio else 0.0,
            "decoder_load_seconds": load_seconds[d],
        }
        if per_utt:
            result["per_utterance"] = utts[d]
        results.append(result)
    return results[0] if decoders == ("greedy",) else results


def format_table(results: list[dict]) -> str:
    lines = [f"{'manifest':<28} {'decoder':<8} {'utts':>6} {'hours':>6} {'CER %':>7} {'WER %':>7} "
             f"{'sub/del/ins (words)':>20} {'RTF':>7}"]
    for r in results:
        we = r["word_errors"]
        lines.append(f"{Path(r['manifest']).name:<28} {r.get('decoder', 'greedy'):<8} {r['utterances']:>6} "
                     f"{r['hours']:>6.2f} {100 * r['cer']:>7.2f} {100 * r['wer']:>7.2f} "
                     f"{we['sub']:>6}/{we['del']}/{we['ins']:<6} {r['rtf']:>7.4f}")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="speech release directory (required)")
    ap.add_argument("--manifest", nargs="+", required=True, help="one or more manifests to score (required)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="autocast for the model "
                    "(default: fp32)")
    ap.add_argument("--batch-seconds", type=float, default=600.0,
                    help="padded seconds of audio per batch (default: 600)")
    ap.add_argument("--limit", type=int, default=0, help="score only the first N utterances (default: 0 = all)")
    ap.add_argument("--json", default=None, help="write the results here as JSON (default: none)")
    ap.add_argument("--per-utt", action="store_true", help="include per-utterance hypotheses and errors in the JSON")
    ap.add_argument("--word-timings", action="store_true", help="include word timings (with --per-utt)")
    ap.add_argument("--decoder", nargs="+", choices=DECODERS, default=["greedy"],
                    help="greedy, beam (the release's decoder.json) and/or rescore (beam + its rnnlm/) "
                         "(default: greedy)")
    args = ap.parse_args(argv)

    asr = load_speech_release(args.model, device=select_device(args.device))
    if "greedy" not in args.decoder and asr.beam_config is None:
        ap.error(f"{args.model} has no decoder.json (run recipes/asr/tune_decoder.py): only --decoder greedy")
    results = []
    for m in args.manifest:
        out = evaluate_manifest(asr, m, batch_seconds=args.batch_seconds, precision=args.precision,
                                per_utt=args.per_utt, word_timings=args.word_timings, limit=args.limit,
                                decoders=tuple(dict.fromkeys(args.decoder)))
        results += out if isinstance(out, list) else [out]
    print(format_table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"model": str(args.model), "precision": args.precision,
                                               "results": results}, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
