"""Tune the beam-search weights on dev and write them, with the LM files, into a speech release.

    python recipes/asr/tune_decoder.py --model ~/speechdraw-runs/asr-cpu/release \\
        --lexicon ~/speechdraw-runs/lm/lexicon.txt --word-lm ~/speechdraw-runs/lm/word4.arpa \\
        --char-lm ~/speechdraw-runs/lm/char6.arpa --rnnlm ~/speechdraw-runs/lm/rnnlm/release \\
        --cache ~/speechdraw-runs/lm/dev-logprobs.pt
    # quicker, on part of dev, into a copy of the release:
    python recipes/asr/tune_decoder.py --model REL --out REL-lm --max-utts 200 --lexicon ... --word-lm ...
    # on every listening condition of the synthetic corpus at once (50 utterances each, 200 different sentences):
    D=~/speechdraw-runs/data/synth
    python recipes/asr/tune_decoder.py --model REL --out REL-lm --max-utts 200 --lexicon ... --word-lm ... \
        --manifest $D/dev.jsonl,$D/dev_noisy.jsonl,$D/dev_reverb.jsonl,$D/dev_phone.jsonl

What it searches (coordinate search: one weight at a time over its grid, the others held at their best, repeated
until a round changes nothing or --rounds is reached), each point one beam-search decoding of the dev set scored by
WER (ties: CER):
  * lexicon mode (--lexicon + --word-lm): lm_weight x word_score;
  * lexicon-free mode (--char-lm): lm_weight x sil_score;
  * N-best rescoring (--rnnlm) of the written mode's N-best lists: LSTM weight x length bonus (a full grid: the
    LSTM scores every hypothesis once, after which each point is only arithmetic).
The acoustic model runs once: dev log-probabilities are computed up front (and kept in --cache for later runs); the
decoding is what costs. Beam sizes: on an interim cpu-preset checkpoint (step 977, first 300 dev utterances, weights
fixed at lm_weight 1.5 and word_score -1 / sil_score 0), the lexicon search kept improving with the beam (dev WER 22.4%
at 50, 21.6% at 100, 20.9% at 200, 19.8% at 500, for decoding RTFs 0.004 / 0.011 / 0.018 / 0.046), the lexicon-free
one hardly (25.6% at 50, 25.2% at 100, 25.0% at 200, for 0.009 / 0.029 / 0.056): hence 200 and 50 by default.
The mode with the lower dev WER (or --write) goes into <out>/decoder.json with its LM as
lm.arpa, the lexicon as lexicon.txt and the LSTM LM as rnnlm/; <out>/tuning.json keeps every point searched, the
greedy baseline and the best settings of both modes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from speechdraw.asr.audio import load_audio
from speechdraw.asr.beam import BeamConfig, BeamSearchDecoder
from speechdraw.asr.decode import greedy_decode
from speechdraw.asr.lm.rnnlm import load_rnnlm, rescore
from speechdraw.asr.manifest import read_manifest
from speechdraw.asr.metrics import ErrorRates
from speechdraw.asr.release import add_decoder, load_speech_release
from speechdraw.asr.text import TokenSet
from speechdraw.engine.checkpoint import safe_load
from speechdraw.engine.sampler import eval_batches

SYNTH = "~/speechdraw-runs/data/synth"


@dataclass
class DevSet:
    """What the search decodes: per utterance its (T_i, V) log-probabilities and its reference text."""

    log_probs: list[torch.Tensor]
    texts: list[str]
    seconds: float  # audio duration
    am_seconds: float = 0.0  # features + acoustic model compute time


def dev_entries(manifests: list[str], max_utts: int) -> list:
    """The first max_utts utterances (0: all) of one manifest, or of several interleaved by position: utterance i is
    entry i of manifest i mod k. Conditions of one corpus (dev, dev_noisy, dev_reverb, dev_phone: entry i of each is
    the same sentence) then share the tuning set equally, each sentence heard once, under one condition."""
    lists = [read_manifest(m) for m in manifests]
    entries = [lists[i % len(lists)][i] for i in range(min(len(m) for m in lists))]  # one manifest: all of it
    return entries[: max_utts or None]


def compute_dev(asr, manifests: list[str], max_utts: int, cache: str | None) -> DevSet:
    """Acoustic log-probabilities of the tuning utterances (dev_entries), from the cache when it matches."""
    entries = dev_entries(manifests, max_utts)
    key = {"model": str(Path(asr.dir).resolve()), "created": asr.config.get("created", ""),
           "manifest": ",".join(str(Path(m).resolve()) for m in manifests), "utterances": len(entries)}
    if cache and Path(cache).is_file():
        data = safe_load(cache)
        if data.get("key") == key:
            print(f"acoustic log-probabilities from {cache}")
            return DevSet(list(data["log_probs"]), list(data["texts"]), float(data["seconds"]),
                          float(data["am_seconds"]))
    log_probs: list = [None] * len(entries)
    am = 0.0
    for idx in eval_batches([e.duration for e in entries], max_total=600.0):
        waves = [load_audio(entries[i].audio, asr.feature_config.sample_rate, offset=entries[i].offset or 0.0,
                            duration=entries[i].duration if entries[i].offset else None) for i in idx]
        t0 = time.perf_counter()
        lp, lens = asr.log_probs(waves)  # (B, T, V), (B,)
        am += time.perf_counter() - t0
        for b, i in enumerate(idx):
            log_probs[i] = lp[b, : int(lens[b])].float().cpu().clone()
    dev = DevSet(log_probs, [e.text for e in entries], sum(e.duration for e in entries), am)
    if cache:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "log_probs": dev.log_probs, "texts": dev.texts, "seconds": dev.seconds,
                    "am_seconds": dev.am_seconds}, cache)
    print(f"acoustic model: {len(entries)} utterances, {dev.seconds / 3600:.2f} h of audio, RTF "
          f"{dev.am_seconds / max(dev.seconds, 1e-9):.4f}")
    return dev


def error_rates(refs: list[str], hyps: list[str]) -> dict:
    rates = ErrorRates.empty()
    for r, h in zip(refs, hyps):
        rates.add(r, h)
    return {"wer": rates.wer, "cer": rates.cer}


def decode_dev(dev: DevSet, tokens: TokenSet, cfg: BeamConfig) -> tuple[list[list], dict]:
    """Beam-search every dev utterance -> (N-best lists, {"wer", "cer", "decode_seconds", "rtf", "load_seconds"})."""
    decoder = BeamSearchDecoder(tokens, cfg)
    t0 = time.perf_counter()
    nbests = [decoder(lp[None])[0] for lp in dev.log_probs]
    seconds = time.perf_counter() - t0
    result = error_rates(dev.texts, [n[0].text if n else "" for n in nbests])
    result.update(decode_seconds=seconds, rtf=seconds / max(dev.seconds, 1e-9), load_seconds=decoder.load_seconds)
    return nbests, result


def coordinate_search(evaluate: Callable[[dict], dict], grids: dict[str, list[float]], start: dict,
                      rounds: int) -> tuple[dict, dict, list[dict]]:
    """Minimise (wer, cer) one parameter at a time over its grid. evaluate(params) -> {"wer", "cer", ...}; each
    point is evaluated once. Returns (best params, its result, every point evaluated in order)."""
    seen: dict[tuple, dict] = {}
    history: list[dict] = []

    def run(params: dict) -> dict:
        k = tuple(sorted(params.items()))
        if k not in seen:
            seen[k] = evaluate(params)
            history.append({**params, **{m: v for m, v in seen[k].items() if not m.startswith("_")}})
        return seen[k]

    best = dict(start)
    best_r = run(best)
    for _ in range(rounds):
        changed = False
        for name, values in grids.items():
            for v in values:
                r = run({**best, name: v})
                if (r["wer"], r["cer"]) < (best_r["wer"], best_r["cer"]):
                    best, best_r, changed = {**best, name: v}, r, True
        if not changed:
            break
    return best, best_r, history


def tune_mode(dev: DevSet, tokens: TokenSet, base: BeamConfig, grids: dict[str, list[float]], rounds: int,
              label: str) -> tuple[BeamConfig, dict, list[dict], list[list]]:
    """Search `grids` (BeamConfig field -> values) from their middle values -> (best config, its dev result,
    history, its N-best lists)."""
    nbests: dict[tuple, list[list]] = {}

    def evaluate(params: dict) -> dict:
        lists, r = decode_dev(dev, tokens, dataclasses.replace(base, **params))
        nbests[tuple(sorted(params.items()))] = lists
        print(f"  {label} " + " ".join(f"{k} {v:g}" for k, v in params.items())
              + f": WER {100 * r['wer']:.2f}% CER {100 * r['cer']:.2f}% ({r['decode_seconds']:.1f} s, RTF "
              f"{r['rtf']:.4f})", flush=True)
        return r

    start = {name: values[len(values) // 2] for name, values in grids.items()}
    best, best_r, history = coordinate_search(evaluate, grids, start, rounds)
    return dataclasses.replace(base, **best), best_r, history, nbests[tuple(sorted(best.items()))]


def tune_rescoring(dev: DevSet, nbests: list[list], lm_logprobs: list[list[float]], weights: list[float],
                   bonuses: list[float]) -> tuple[dict, list[dict]]:
    """Full grid over (weight, length bonus) -> (best {"weight", "length_bonus", "wer", "cer"}, every point)."""
    history = []
    for w in weights:
        for b in bonuses:
            hyps = [rescore(n, lp, weight=w, length_bonus=b)[0].hypothesis.text if n else ""
                    for n, lp in zip(nbests, lm_logprobs)]
            history.append({"weight": w, "length_bonus": b, **error_rates(dev.texts, hyps)})
    best = min(history, key=lambda r: (r["wer"], r["cer"]))  # first of equals: the grid's order (smaller weights)
    return best, history


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="speech release directory (required)")
    ap.add_argument("--manifest", default=f"{SYNTH}/dev.jsonl", help=f"dev manifest, or several comma-separated, "
                    f"interleaved (utterance i from manifest i mod k; e.g. dev,dev_noisy,dev_reverb,dev_phone: every "
                    f"condition equally) (default: {SYNTH}/dev.jsonl)")
    ap.add_argument("--max-utts", type=int, default=0, help="tune on the first N utterances (default: 0 = all)")
    ap.add_argument("--out", default=None, help="release to write the decoder into (default: --model itself; "
                    "another directory gets a copy of the acoustic release first)")
    ap.add_argument("--lexicon", default=None, help="lexicon for the word LM (word<TAB>spelling)")
    ap.add_argument("--word-lm", default=None, help="word n-gram ARPA file (lexicon mode; needs --lexicon)")
    ap.add_argument("--char-lm", default=None, help="character n-gram ARPA file (lexicon-free mode)")
    ap.add_argument("--rnnlm", default=None, help="LSTM LM release directory for N-best rescoring")
    ap.add_argument("--write", choices=["best", "lexicon", "lexicon-free"], default="best",
                    help="which mode goes into decoder.json (default: best = lower dev WER)")
    # Grids: each search starts from the middle value of each grid.
    ap.add_argument("--lm-weights", default="0.5,1,1.5,2,2.5", help="word LM lm_weight grid "
                    "(default: 0.5,1,1.5,2,2.5)")
    ap.add_argument("--word-scores", default="-2,-1,0,1,2", help="word_score grid (default: -2,-1,0,1,2)")
    ap.add_argument("--char-lm-weights", default="0.5,1,1.5,2,2.5", help="character LM lm_weight grid "
                    "(default: 0.5,1,1.5,2,2.5)")
    ap.add_argument("--sil-scores", default="-1,0,1", help="sil_score grid, lexicon-free (default: -1,0,1)")
    ap.add_argument("--rescore-weights", default="0,0.1,0.2,0.3,0.4,0.5,0.75,1",
                    help="LSTM LM weight grid (default: 0,0.1,0.2,0.3,0.4,0.5,0.75,1)")
    ap.add_argument("--length-bonuses", default="-1,0,0.5,1,1.5,2,2.5,3,4", help="rescoring bonus per word grid "
                    "(default: -1,0,0.5,1,1.5,2,2.5,3,4)")
    ap.add_argument("--rounds", type=int, default=2, help="coordinate-search rounds (default: 2)")
    ap.add_argument("--beam-size", type=int, default=200, help="beam size, lexicon mode (default: 200)")
    ap.add_argument("--char-beam-size", type=int, default=50, help="beam size, lexicon-free mode (default: 50)")
    ap.add_argument("--beam-threshold", type=float, default=25.0, help="beam threshold (default: 25)")
    ap.add_argument("--nbest", type=int, default=10, help="N-best list length for rescoring (default: 10)")
    ap.add_argument("--cache", default=None, help="keep the dev log-probabilities in this file (default: none)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = ap.parse_args(argv)
    if bool(args.lexicon) != bool(args.word_lm):
        ap.error("lexicon mode needs both --lexicon and --word-lm")
    if not (args.word_lm or args.char_lm):
        ap.error("give an LM to tune: --lexicon + --word-lm, and/or --char-lm")
    if args.write != "best" and not (args.word_lm if args.write == "lexicon" else args.char_lm):
        ap.error(f"--write {args.write} needs that mode's LM")
    torch.set_num_threads(args.threads)
    manifests = [os.path.expanduser(m) for m in args.manifest.split(",") if m.strip()]
    path = lambda p: str(Path(os.path.expanduser(p)).resolve()) if p else ""  # noqa: E731

    asr = load_speech_release(args.model)
    dev = compute_dev(asr, manifests, args.max_utts, os.path.expanduser(args.cache) if args.cache else None)
    greedy = [greedy_decode(lp[None], torch.tensor([lp.shape[0]]), asr.tokens)[0].text for lp in dev.log_probs]
    report: dict = {"model": str(args.model), "manifest": ",".join(manifests), "utterances": len(dev.texts),
                    "audio_hours": dev.seconds / 3600, "am_rtf": dev.am_seconds / max(dev.seconds, 1e-9),
                    "greedy": error_rates(dev.texts, greedy)}
    print(f"greedy: WER {100 * report['greedy']['wer']:.2f}% CER {100 * report['greedy']['cer']:.2f}%")
    base = BeamConfig(beam_size=args.beam_size, beam_threshold=args.beam_threshold, nbest=args.nbest)

    modes = {}
    if args.word_lm:
        cfg = dataclasses.replace(base, lexicon=path(args.lexicon), lm=path(args.word_lm))
        grids = {"lm_weight": floats(args.lm_weights), "word_score": floats(args.word_scores)}
        modes["lexicon"] = tune_mode(dev, asr.tokens, cfg, grids, args.rounds, "lexicon")
    if args.char_lm:
        cfg = dataclasses.replace(base, lm=path(args.char_lm), beam_size=args.char_beam_size)
        grids = {"lm_weight": floats(args.char_lm_weights), "sil_score": floats(args.sil_scores)}
        modes["lexicon-free"] = tune_mode(dev, asr.tokens, cfg, grids, args.rounds, "lexicon-free")
    for mode, (cfg, result, history, _) in modes.items():
        report[mode] = {"config": dataclasses.asdict(cfg), "wer": result["wer"], "cer": result["cer"],
                        "rtf": result["rtf"], "load_seconds": result["load_seconds"], "history": history}
        print(f"{mode}: best lm_weight {cfg.lm_weight:g}, word_score {cfg.word_score:g}, sil_score "
              f"{cfg.sil_score:g}: WER {100 * result['wer']:.2f}% CER {100 * result['cer']:.2f}%")
    written = args.write if args.write != "best" else min(modes, key=lambda m: (modes[m][1]["wer"],
                                                                               modes[m][1]["cer"]))
    cfg, result, _, nbests = modes[written]
    report["written"] = written

    if args.rnnlm:
        scorer = load_rnnlm(os.path.expanduser(args.rnnlm))
        t0 = time.perf_counter()
        lm_logprobs = [scorer([h.text for h in n]) if n else [] for n in nbests]
        score_seconds = time.perf_counter() - t0
        best, history = tune_rescoring(dev, nbests, lm_logprobs, floats(args.rescore_weights),
                                       floats(args.length_bonuses))
        cfg = dataclasses.replace(cfg, rescore_weight=best["weight"], rescore_length_bonus=best["length_bonus"])
        report["rescore"] = {"weight": best["weight"], "length_bonus": best["length_bonus"], "wer": best["wer"],
                             "cer": best["cer"], "score_seconds": score_seconds,
                             "rtf": score_seconds / max(dev.seconds, 1e-9), "nbest": args.nbest, "history": history}
        print(f"rescoring {written} {args.nbest}-best: weight {best['weight']:g}, length bonus "
              f"{best['length_bonus']:g}: WER {100 * best['wer']:.2f}% CER {100 * best['cer']:.2f}% "
              f"(LSTM scoring {score_seconds:.1f} s)")

    out = Path(os.path.expanduser(args.out or args.model))
    if out.resolve() != Path(os.path.expanduser(args.model)).resolve():
        shutil.copytree(os.path.expanduser(args.model), out, dirs_exist_ok=True)
    add_decoder(out, cfg, rnnlm=os.path.expanduser(args.rnnlm) if args.rnnlm else None)
    (out / "tuning.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}/decoder.json ({written}) and {out}/tuning.json")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
