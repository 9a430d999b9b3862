"""WER alignment speed and agreement: speechdraw.asr.metrics (the DP vectorised over the hypothesis in numpy) beside
the pure-Python loop it replaced, rapidfuzz's Levenshtein.editops and jiwer, on long transcripts, in one run.

The long transcripts are word sequences from a small vocabulary with ~15% of the words substituted, deleted or
inserted (a hypothesis of a long file); the character runs use the same text as characters. Agreement: on random short
sequences over a 3-letter alphabet (many equally cheap alignments), how often each library's path gives other
sub/del/ins counts than speechdraw's (the totals always agree: the edit distance is unique, its split is not).

    python bench/wer_alignment.py                   # record bench/results/wer_alignment.json (clean tree)
    python bench/wer_alignment.py --words 1000 --allow-dirty
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_bench_args, write_record  # noqa: E402

from speechdraw.asr.metrics import edit_ops, edit_ops_reference  # noqa: E402

VOCAB = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "in", "park", "she", "sells", "sea", "shells", "river"]


python_ops = edit_ops_reference  # the pure-Python loop speechdraw.asr.metrics used before (commit 9e1279b)


def speechdraw_ops(ref, hyp) -> tuple[int, int, int]:
    o = edit_ops(ref, hyp)
    return o.substitutions, o.deletions, o.insertions


def rapidfuzz_ops(ref, hyp) -> tuple[int, int, int]:
    from rapidfuzz.distance import Levenshtein

    ops = Levenshtein.editops(ref, hyp)
    return tuple(sum(o.tag == t for o in ops) for t in ("replace", "delete", "insert"))


def jiwer_ops(ref, hyp) -> tuple[int, int, int]:
    import jiwer

    if isinstance(ref, str):
        o = jiwer.process_characters(ref, hyp)
    else:
        o = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return o.substitutions, o.deletions, o.insertions


def noisy(words: list[str], rng: random.Random, rate: float = 0.15) -> list[str]:
    out = []
    for w in words:
        u = rng.random()
        if u < rate / 3:
            out.append(rng.choice(VOCAB))
        elif u < 2 * rate / 3:
            continue
        elif u < rate:
            out += [w, rng.choice(VOCAB)]
        else:
            out.append(w)
    return out


def timed(fn, ref, hyp, repeat: int) -> tuple[float, tuple]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(ref, hyp)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=3000, help="reference words of the long transcript (default: 3000)")
    ap.add_argument("--chars", type=int, default=3000, help="reference characters of the long text (default: 3000)")
    ap.add_argument("--random-cases", type=int, default=20000, help="short random pairs for agreement (default: 20000)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings (the Python loop: once) (default: 3)")
    args = parse_bench_args(ap)
    rng = random.Random(0)
    ref_words = [rng.choice(VOCAB) for _ in range(args.words)]
    hyp_words = noisy(ref_words, rng)
    text = " ".join(ref_words)[: args.chars]
    ref_chars, hyp_chars = text, " ".join(noisy(text.split(), rng))
    impls = {"python_loop": python_ops, "speechdraw_numpy": speechdraw_ops, "rapidfuzz": rapidfuzz_ops,
             "jiwer": jiwer_ops}
    figures: dict = {"words": len(ref_words), "hyp_words": len(hyp_words), "chars": len(ref_chars)}
    for unit, (ref, hyp) in (("words", (ref_words, hyp_words)), ("chars", (ref_chars, hyp_chars))):
        base = None
        for name, fn in impls.items():
            seconds, ops = timed(fn, ref, hyp, 1 if name == "python_loop" else args.repeat)
            base = base or seconds
            figures[f"{unit}_{name}_seconds"] = round(seconds, 5)
            figures[f"{unit}_{name}_speedup_vs_python"] = round(base / seconds, 1)
            figures[f"{unit}_{name}_sub_del_ins"] = list(ops)
            print(f"{unit:<6} {name:<17} {seconds:9.4f} s  x{base / seconds:8.1f}  sub/del/ins {ops}", flush=True)
    differ = dict.fromkeys(impls, 0)
    for _ in range(args.random_cases):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 9)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 9)))
        want = python_ops(a, b)
        for name, fn in impls.items():
            differ[name] += fn(a, b) != want
    for name, n in differ.items():
        figures[f"random_{name}_split_differs"] = n
        print(f"random pairs whose sub/del/ins split differs from the Python loop's: {name} {n} of "
              f"{args.random_cases}", flush=True)
    figures["random_cases"] = args.random_cases
    write_record("wer_alignment", figures, allow_dirty=args.allow_dirty,
                 title="WER alignment: speechdraw's numpy DP vs the pure-Python loop, rapidfuzz and jiwer",
                 notes="Seconds are the best of --repeat runs on one long transcript pair, one process, one thread. "
                       "split_differs: random short pairs (3-letter alphabet) whose sub/del/ins counts differ from "
                       "the pure-Python loop's (total errors always equal).")


if __name__ == "__main__":
    main()
