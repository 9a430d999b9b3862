"""Score a speech release on a manifest: WER/CER with substitutions, deletions and insertions, the most frequent
confusions, and per-utterance aligned errors. One implementation for `speechdraw evaluate` and recipes/asr/evaluate.py.

    asr = load_speech_release(path)
    result = evaluate_manifest(asr, "test.jsonl", per_utt=True)        # one dict (several with decoders=(...))
    print(format_table([result]))
    print(format_errors(result))                                       # icefall's errs-* text

The result dict (also what --json writes, under "results"):
    manifest, decoder, utterances, hours, cer, wer
    word_errors / char_errors   {"sub", "del", "ins", "ref"}: corpus totals (errors / ref = the rate)
    confusions                  {"substitutions": [[ref, hyp, count], ...], "deletions": [[ref, count], ...],
                                 "insertions": [[hyp, count], ...]}, most frequent first (words)
    rtf, am_rtf, decode_rtf     compute seconds / audio seconds: both, features + model, decoder alone
    decoder_load_seconds        building the beam decoder (loading the LM), apart from the RTFs
    per_utterance (per_utt)     [{audio, ref, hyp, word_errors, words, char_errors, chars, aligned}] in manifest order;
                                aligned: "the (cat->bat) sat (*->down)" (ref->hyp, * = nothing)

Error rates are corpus totals (errors / reference length); CER counts spaces as characters (speechdraw.asr.metrics).
Audio file decoding is excluded from the RTFs.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import torch

from speechdraw.asr.audio import load_audio
from speechdraw.asr.decode import align_words
from speechdraw.asr.features import pad_waves
from speechdraw.asr.manifest import read_manifest
from speechdraw.asr.metrics import EditOps, ErrorRates, align, aligned_text, char_ops, confusions
from speechdraw.engine.device import Precision
from speechdraw.engine.sampler import eval_batches


def _ops(pairs: list[tuple]) -> EditOps:
    return EditOps(sum(a is not None and b is not None and a != b for a, b in pairs),
                   sum(b is None for a, b in pairs), sum(a is None for a, b in pairs),
                   sum(a is not None for a, b in pairs))


def confusion_lists(counts: Counter, top: int | None = None) -> dict:
    """Counter of (ref | None, hyp | None) -> the JSON lists, most frequent first (ties alphabetical)."""
    def ranked(items):
        return sorted(items, key=lambda x: (-x[-1], [str(v) for v in x[:-1]]))[:top]

    return {"substitutions": ranked([[a, b, n] for (a, b), n in counts.items() if a is not None and b is not None]),
            "deletions": ranked([[a, n] for (a, b), n in counts.items() if b is None]),
            "insertions": ranked([[b, n] for (a, b), n in counts.items() if a is None])}


def evaluate_manifest(asr, manifest: str | Path, *, batch_seconds: float = 600.0, precision: str = "fp32",
                      per_utt: bool = False, word_timings: bool = False, limit: int = 0,
                      decoders: tuple[str, ...] = ("greedy",), top: int = 50) -> dict | list[dict]:
    """Score one manifest with each decoder (one acoustic pass). Returns one result dict per decoder (a single dict
    when `decoders` is the default). `asr`: a SpeechModel (speechdraw.asr.release.load_speech_release)."""
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
    confused = {d: Counter() for d in decoders}
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
                ref = entries[i].text
                pairs = align(ref.split(), h.text.split())
                w, c = _ops(pairs), char_ops(ref, h.text)
                rates[d].add_ops(w, c)
                confused[d].update(confusions(pairs))
                if per_utt:
                    utts[d][i] = {"audio": entries[i].audio, "ref": ref, "hyp": h.text, "word_errors": w.errors,
                                  "words": w.ref_len, "char_errors": c.errors, "chars": c.ref_len,
                                  "aligned": aligned_text(pairs)}
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
            "confusions": confusion_lists(confused[d], top),
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


def format_transcripts(results: list[dict]) -> str:
    """Per manifest, each utterance's reference and every decoder's transcript under it, with its word errors."""
    out, by_manifest = [], {}
    for r in results:
        by_manifest.setdefault(r["manifest"], []).append(r)
    for manifest, rs in by_manifest.items():
        out.append(f"== {Path(manifest).name}")
        width = max(len("reference"), *(len(r["decoder"]) for r in rs))
        for i, u in enumerate(rs[0]["per_utterance"]):
            out.append(f"{Path(u['audio']).name}\n  {'reference':<{width}}  {u['ref']}")
            for r in rs:
                h = r["per_utterance"][i]
                out.append(f"  {r['decoder']:<{width}}  {h['hyp']}   [{h['word_errors']} of {h['words']} words wrong]")
    return "\n".join(out)


def format_errors(result: dict, top: int | None = None, max_utts: int | None = None) -> str:
    """icefall's errs-* report for one result: the rates, per-utterance aligned errors (the first `max_utts` utterances
    with errors, all by default; needs per_utt), then the `top` most frequent substitutions, deletions and
    insertions (all by default)."""
    we, ce = result["word_errors"], result["char_errors"]
    out = [f"{Path(result['manifest']).name} ({result['decoder']}): %WER {100 * result['wer']:.2f} "
           f"[ {we['sub'] + we['del'] + we['ins']} / {we['ref']}, {we['ins']} ins, {we['del']} del, {we['sub']} sub ]",
           f"{' ' * len(Path(result['manifest']).name)}  %CER {100 * result['cer']:.2f} "
           f"[ {ce['sub'] + ce['del'] + ce['ins']} / {ce['ref']}, {ce['ins']} ins, {ce['del']} del, {ce['sub']} sub ]"]
    if max_utts != 0 and result.get("per_utterance"):
        wrong = [u for u in result["per_utterance"] if u["word_errors"] or u["char_errors"]]
        shown = "" if max_utts is None or len(wrong) <= max_utts else f", the first {max_utts} shown"
        out += ["", f"PER-UTT DETAILS ({len(wrong)} of {len(result['per_utterance'])} utterances with errors{shown}): "
                    "word or (ref->hyp), * = nothing"]
        out += [f"{Path(u['audio']).name}:\t{u['aligned']}" for u in wrong[:max_utts]]
    conf = result["confusions"]
    out += ["", "SUBSTITUTIONS: count ref -> hyp"]
    out += [f"{n:>6}   {a} -> {b}" for a, b, n in conf["substitutions"][:top]]
    out += ["", "DELETIONS: count ref"] + [f"{n:>6}   {a}" for a, n in conf["deletions"][:top]]
    out += ["", "INSERTIONS: count hyp"] + [f"{n:>6}   {b}" for b, n in conf["insertions"][:top]]
    return "\n".join(out)
