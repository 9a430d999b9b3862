"""How recipes/asr/train_ngram.py grows with the text: wall time and peak memory (RSS) against words.

    python bench/ngram_scaling.py                      # 1, 3, 10, 100 M words; 4-gram, 200k vocabulary, 0,0,1 pruning
    python bench/ngram_scaling.py --sizes 1e6,3e6,1e7 --max-seconds 900

The text is Zipfian (word of rank r drawn with probability ~ 1/r over --zipf-vocab ranks, sentence lengths 1 + a
Poisson of mean 19, numpy's PCG64 from --seed): a stand-in for LibriSpeech's LM text at the same sizes, but harder,
since independent draws make almost every 3- and 4-gram new (real text repeats far more), so the distinct n-grams
this text makes are an upper bound for real text of the same length. Each size runs the recipe in a process of its own
(its peak RSS from wait4); a size runs only when
the previous one's peak RSS, scaled linearly, fits --max-rss and finishes within --max-seconds; otherwise the record
says it was skipped or stopped, and the growth (log-log slope of time and RSS against words over the sizes that ran)
is the basis for any estimate beyond them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import REPO, parse_bench_args, write_record  # noqa: E402


def word(rank: int) -> str:
    """Rank 0 -> 'wa', 25 -> 'wz', 26 -> 'wba', ...: a distinct lowercase word per rank."""
    letters = []
    while True:
        rank, r = divmod(rank, 26)
        letters.append(chr(97 + r))
        if rank == 0:
            return "w" + "".join(reversed(letters))


def write_zipf_text(path: Path, n_words: int, words: np.ndarray, seed: int) -> dict:
    """Write n_words Zipfian draws from `words` (object array, most frequent first) as sentences, one a line, to path
    (the last sentence cut at n_words); deterministic in (n_words, seed)."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, len(words) + 1))
    cdf /= cdf[-1]
    written = sentences = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        while written < n_words:
            lengths = 1 + rng.poisson(19, size=5_000)
            tokens = words[np.searchsorted(cdf, rng.random(int(lengths.sum())))][:n_words - written]
            seps = np.full(len(tokens), " ", dtype=object)
            ends = np.cumsum(lengths)
            seps[ends[ends <= len(tokens)] - 1] = "\n"
            seps[-1] = "\n"
            f.write("".join(itertools.chain.from_iterable(zip(tokens.tolist(), seps.tolist()))))
            written += len(tokens)
            sentences += int(np.sum(seps == "\n"))
    os.replace(tmp, path)
    return {"words": written, "sentences": sentences, "mb": path.stat().st_size / 1e6}


def run_measured(cmd: list[str], max_seconds: float) -> dict:
    """Run cmd; wall seconds, its peak RSS (GB, from wait4) and whether it finished within max_seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - t0 > max_seconds:
            os.killpg(proc.pid, signal.SIGKILL)
            timed_out = True
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    out = proc.stdout.read()
    return {"wall_seconds": round(wall, 1), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 3),
            "exit_status": os.waitstatus_to_exitcode(status), "timed_out": timed_out, "log_tail": out[-600:]}


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x (1 = linear growth)."""
    if len(xs) < 2:
        return None
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e6,3e6,1e7,1e8",
                    help="words per run, comma-separated (default: 1e6,3e6,1e7,1e8)")
    ap.add_argument("--order", type=int, default=4, help="n-gram order (default: 4)")
    ap.add_argument("--prune", default="0,0,1", help="--ngram.prune of the recipe (default: 0,0,1)")
    ap.add_argument("--vocab-size", type=int, default=200_000, help="--ngram.vocab_size (default: 200000)")
    ap.add_argument("--zipf-vocab", type=int, default=1_000_000, help="ranks of the Zipf law (default: 1000000)")
    ap.add_argument("--memory", default="1G", help="the recipe's --memory counting budget (default: 1G)")
    ap.add_argument("--seed", type=int, default=0, help="text generator seed (default: 0)")
    ap.add_argument("--max-seconds", type=float, default=900, help="stop a size after this (default: 900)")
    ap.add_argument("--max-rss", type=float, default=10.0,
                    help="skip a size whose peak RSS predicted linearly from the last run exceeds this many GB "
                         "(default: 10)")
    ap.add_argument("--workdir", default="/tmp/ngram-scaling",
                    help="texts and ARPA files (default: /tmp/ngram-scaling)")
    ap.add_argument("--name", default="ngram_scaling", help="record name (default: ngram_scaling)")
    args = parse_bench_args(ap)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)

    words = np.array([word(r) for r in range(args.zipf_vocab)], dtype=object)
    runs, last = [], None
    for size in (int(float(s)) for s in args.sizes.split(",")):
        entry: dict = {"target_words": size}
        if last is not None and last["peak_rss_gb"] * size / last["words"] > args.max_rss:
            entry["skipped"] = (f"predicted peak RSS {last['peak_rss_gb'] * size / last['words']:.1f} GB "
                                f"(linear from {last['words']:,} words) > --max-rss {args.max_rss} GB")
            runs.append(entry)
            print(entry)
            continue
        text = work / f"zipf_{size}_{args.seed}.txt"
        t0 = time.perf_counter()
        entry.update(write_zipf_text(text, size, words, args.seed))
        entry["generate_seconds"] = round(time.perf_counter() - t0, 1)
        report = work / f"report_{size}.json"
        arpa = work / f"lm_{size}.arpa"
        cmd = [sys.executable, "recipes/asr/train_ngram.py", "--text", str(text), "--out", str(arpa),
               "--ngram.order", str(args.order), "--ngram.prune", args.prune,
               "--ngram.vocab_size", str(args.vocab_size), "--memory", args.memory, "--tmp_dir", str(work),
               "--report", str(report)]
        entry.update(run_measured(cmd, args.max_seconds))
        if entry["exit_status"] == 0:
            r = json.loads(report.read_text())
            entry.update({k: r[k] for k in ("train_seconds", "write_seconds", "vocab_size", "ngrams", "raw_ngrams",
                                            "oov_tokens", "spilled_runs", "arpa_mb")})
            entry.pop("log_tail")
            last = entry
        runs.append(entry)
        print(json.dumps(entry))
        text.unlink()
        arpa.unlink(missing_ok=True)
    done = [r for r in runs if r.get("exit_status") == 0]
    xs = [r["words"] for r in done]
    growth = {"sizes_run": xs,
              "time_slope": slope(xs, [r["wall_seconds"] for r in done]),
              "rss_slope": slope(xs, [r["peak_rss_gb"] for r in done])}
    if done:  # linear extrapolation from the largest run (slopes say whether linear is optimistic)
        top = done[-1]
        for words in (100_000_000, 800_000_000):
            if words > top["words"]:
                growth[f"linear_estimate_{words // 1_000_000}M"] = {
                    "wall_seconds": round(top["wall_seconds"] * words / top["words"]),
                    "peak_rss_gb": round(top["peak_rss_gb"] * words / top["words"], 1)}
    load = os.getloadavg()
    figures = {"order": args.order, "prune": args.prune, "vocab_size": args.vocab_size, "zipf_vocab": args.zipf_vocab,
               "memory": args.memory, "seed": args.seed, "runs": runs, "growth": growth,
               "load_average_end": [round(x, 2) for x in load]}
    notes = ("Zipfian text (independent draws): nearly every 3-/4-gram is new, an upper bound on the distinct n-grams "
             "of real text of the same length. Counting "
             f"memory is bounded by --memory; the distinct n-grams (counts, probabilities) are held in memory and "
             f"grow with the text. Load average at the end: {', '.join(f'{x:.1f}' for x in load)} "
             f"(shared machine: times are upper bounds).")
    write_record(args.name, figures, title="n-gram trainer: time and peak memory against words", notes=notes,
                 allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
