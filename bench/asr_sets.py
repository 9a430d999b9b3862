"""The speech test sets as bench/asr_quality.py and bench/asr_decode.py score them: which sets a corpus has, a seeded
random subset of each, error rates per group of utterances, and the target checks of issue 13.

Sets (data_prep/synth_speech.py writes them; recipes/asr/README.md "Corpus"): test (held-out espeak-ng variants),
test_accent (held-out accent), test_voice (test's sentences by an unseen flite voice), and test's own utterances made
harder: test_noisy (held-out noise kinds at 0/5/10/20 dB), test_reverb (held-out rooms), test_phone (phone channel +
lossy codec). A set whose manifest is missing is skipped with a note, so the benches run on older corpora too.

Each scored set becomes one figure named after it (the layout bench/asr_decode.py has always written):
    {"utterances", "of_utterances", "hours", <decoder>: {"wer", "cer", ...}, ...,
     "groups": {field: {value: {"utterances", <decoder>: {"wer", "cer"}}}},
     "snr_mean": {<decoder>: {"wer", "cer"}}}          # test_noisy only: the mean over its SNR groups
Groups come from the manifest lines: snr_db and noise kind (test_noisy), phone_codec and codec (test_phone), RT60 band
(test_reverb), the voice variant (the espeak-ng sets). Error rates are corpus totals within each group.

--max-utts N scores the same seeded random pick of N lines in every set (sorted(random.Random(seed).sample(range(n),
N))): sets of equal length keep the same lines, so test_noisy/test_reverb/test_phone/test_voice still pair one to one
with test.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from speechdraw.asr.manifest import ManifestEntry, read_manifest, write_manifest
from speechdraw.asr.metrics import ErrorRates

TEST_SETS = ("test", "test_accent", "test_voice", "test_noisy", "test_reverb", "test_phone")
HARDER = ("test_noisy", "test_reverb", "test_phone")  # test's utterances through a channel
WORD_LM = "beam_word_ngram"  # asr_decode's row for beam search + word n-gram (lexicon)
RT60_EDGES = (0.3, 0.5, 0.75, 1.0)  # seconds: test_reverb's bands
SUBSET_RULE = "sorted(random.Random(seed).sample(range(lines), max_utts)) of each manifest"


@dataclass
class TestSet:
    name: str
    manifest: Path  # the corpus's manifest, or the subset's copy
    entries: list[ManifestEntry]
    lines: int  # in the corpus's manifest


def add_set_arguments(ap: argparse.ArgumentParser, default_sets: str, corpus: Path) -> None:
    """The options both benches take to choose what they score."""
    ap.add_argument("--corpus", default=str(corpus), help=f"corpus directory with <set>.jsonl (default: {corpus})")
    ap.add_argument("--sets", "--splits", default=default_sets, help="manifests to score, comma-separated; a missing "
                    f"one is skipped with a note (default: {default_sets})")
    ap.add_argument("--max-utts", type=int, default=0, help="score a seeded random pick of N lines of each set "
                    "(the same lines in sets of equal length) (default: 0 = all)")
    ap.add_argument("--subset-seed", type=int, default=0, help="seed of that pick (default: 0)")
    ap.add_argument("--baseline", default=None, help="record (JSON) of the model being replaced: test must stay within "
                    "10%% of its figures and the harder sets get 40%% below them (default: none)")
    ap.add_argument("--results-dir", default=None, help="write the record here instead of bench/results (for trial "
                    "runs)")


def resolve_set_arguments(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[dict | None, dict | None]:
    """(baseline or None, subset figure or None), or ap.error (exit 2) with one line on a bad option."""
    if args.max_utts < 0:
        ap.error(f"--max-utts must be >= 0, got {args.max_utts}")
    if not Path(args.corpus).is_dir():
        ap.error(f"--corpus {args.corpus}: not a directory")
    names = [n for n in args.sets.split(",") if n.strip()]
    if not any((Path(args.corpus) / f"{n}.jsonl").is_file() for n in names):
        ap.error(f"--corpus {args.corpus}: none of {', '.join(f'{n}.jsonl' for n in names)} is there")
    try:
        baseline = read_baseline(args.baseline) if args.baseline else None
    except ValueError as e:
        ap.error(f"--baseline {e}")
    subset = {"max_utts": args.max_utts, "seed": args.subset_seed, "rule": SUBSET_RULE} if args.max_utts else None
    return baseline, subset


def subset_indices(lines: int, max_utts: int, seed: int) -> list[int]:
    """Which lines of a manifest of `lines` lines to score: all when max_utts is 0 or covers them."""
    if not max_utts or max_utts >= lines:
        return list(range(lines))
    return sorted(random.Random(seed).sample(range(lines), max_utts))


def load_sets(corpus: Path, names: list[str], max_utts: int, seed: int, tmp: Path) -> tuple[list[TestSet], dict]:
    """The sets present in `corpus` (subsets written under `tmp`) and {name: why skipped} for the others."""
    found, skipped = [], {}
    for name in names:
        path = corpus / f"{name}.jsonl"
        if not path.is_file():
            skipped[name] = f"no {path}"
            print(f"note: skipping {name}: no {path}", flush=True)
            continue
        entries = read_manifest(path)
        keep = subset_indices(len(entries), max_utts, seed)
        if len(keep) < len(entries):
            chosen = [entries[i] for i in keep]
            write_manifest(tmp / path.name, chosen)
            found.append(TestSet(name, tmp / path.name, chosen, len(entries)))
        else:
            found.append(TestSet(name, path, entries, len(entries)))
    return found, skipped


def rates(refs: list[str], hyps: list[str]) -> dict:
    """{"wer", "cer"}: corpus totals, rounded to 4 places."""
    r = ErrorRates.empty()
    for ref, hyp in zip(refs, hyps, strict=True):
        r.add(ref, hyp)
    return {"wer": round(r.wer, 4), "cer": round(r.cer, 4)}


def rt60_band(rt60: float) -> str:
    for lo, hi in zip(RT60_EDGES, RT60_EDGES[1:]):
        if lo <= rt60 < hi or (hi == RT60_EDGES[-1] and rt60 == hi):
            return f"{lo:g}-{hi:g}"
    return "other"


def group_keys(entry: ManifestEntry) -> dict[str, str]:
    """field -> this utterance's group (a string: a JSON key), from what its manifest line records."""
    x = entry.extra
    keys = {f: str(x[f]) for f in ("snr_db", "noise", "phone_codec", "codec") if f in x}
    if "rt60" in x:
        keys["rt60_s"] = rt60_band(float(x["rt60"]))
    if not keys and entry.speaker:  # a clean set: its voice variant (espeak-ng's speaker is accent+variant)
        keys["variant"] = entry.speaker.split("+")[-1]
    return keys


def _order(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def group_figures(entries: list[ManifestEntry], hyps: dict[str, list[str]]) -> dict:
    """{"groups": {field: {value: {"utterances", decoder: {"wer", "cer"}}}}} and, when there are SNR groups,
    "snr_mean": {decoder: mean of the per-SNR "wer" / "cer"}. hyps: decoder -> transcripts in entries' order."""
    members: dict[str, dict[str, list[int]]] = {}
    for i, e in enumerate(entries):
        for field, value in group_keys(e).items():
            members.setdefault(field, {}).setdefault(value, []).append(i)
    groups = {}
    for field, by_value in members.items():
        groups[field] = {}
        for value in sorted(by_value, key=_order):
            idx = by_value[value]
            refs = [entries[i].text for i in idx]
            groups[field][value] = {"utterances": len(idx),
                                    **{d: rates(refs, [h[i] for i in idx]) for d, h in hyps.items()}}
    out: dict = {"groups": groups}
    if "snr_db" in groups:
        snrs = groups["snr_db"].values()
        out["snr_mean"] = {d: {m: round(statistics.mean(g[d][m] for g in snrs), 4) for m in ("wer", "cer")}
                           for d in hyps}
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Target checks (issue 13)


def is_set_figure(value) -> bool:
    """A per-set figure: a dict holding at least one decoder's {"wer", ...}."""
    return isinstance(value, dict) and any(isinstance(v, dict) and "wer" in v for v in value.values())


def set_results(figures: dict) -> dict[str, dict]:
    """{set: per-set figure} from a record's figures, in this layout or the older ones: asr_decode's per-set dicts
    (unchanged), asr_quality's flat <set>_cer / <set>_wer (greedy)."""
    sets = {k: v for k, v in figures.items() if is_set_figure(v)}
    for key, value in figures.items():
        name = key.removesuffix("_cer")
        if key.endswith("_cer") and name not in sets and isinstance(value, float) and f"{name}_wer" in figures:
            sets[name] = {"greedy": {"cer": value, "wer": figures[f"{name}_wer"]}}
    return sets


def headline(name: str, figure: dict) -> dict:
    """The decoders' figures a target reads for a set: test_noisy's mean over SNRs, else the whole set's."""
    return figure.get("snr_mean", figure) if name == "test_noisy" else figure


def read_baseline(path: str) -> dict:
    """A record of the model being replaced: {"file", "name", "git_commit", "date", "subset", "sets"}."""
    try:
        record = json.loads(Path(path).read_text())
        figures = record["figures"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a readable benchmark record ({e})") from e
    sets = set_results(figures)
    if not sets:
        raise ValueError(f"{path}: no per-set error rates in its figures (not an asr_quality / asr_decode record)")
    return {"file": str(path), "name": record.get("name"), "git_commit": record.get("git_commit"),
            "date": record.get("date"), "subset": figures.get("subset"), "sets": sets}


def _value(sets: dict, name: str, decoder: str, metric: str):
    figure = sets.get(name)
    row = headline(name, figure).get(decoder) if figure else None
    return row.get(metric) if isinstance(row, dict) else None


def target_checks(sets: dict, baseline: dict | None = None) -> dict:
    """Issue 13's targets on this run's per-set figures: {check: {"value", "limit", "pass", "rule"}}; a check whose
    figures are missing has "pass": None and a "note". Only checks on decoders this run scored are listed.

    test_voice greedy CER <= 0.15; test_accent word-LM WER <= 0.07; test_noisy (mean over SNRs) / test_reverb /
    test_phone word-LM WER <= 2 x test's; with a baseline record: test greedy CER and word-LM WER <= 1.1 x the
    baseline's, each harder set's word-LM WER <= 0.6 x the baseline's on that set."""
    decoders = {d for figure in sets.values() for d, v in figure.items() if isinstance(v, dict) and "wer" in v}
    checks: dict = {}

    def check(key: str, rule: str, decoder: str, value, limit, missing: str, **extra) -> None:
        if decoder not in decoders:
            return
        if value is None or limit is None:
            checks[key] = {"pass": None, "rule": rule, "note": missing}
        else:
            checks[key] = {"value": value, "limit": round(limit, 4), "pass": value <= round(limit, 4), "rule": rule,
                           **extra}

    check("test_voice_greedy_cer_at_most_0.15", "test_voice greedy CER <= 0.15", "greedy",
          _value(sets, "test_voice", "greedy", "cer"), 0.15, "test_voice not scored")
    check("test_accent_word_lm_wer_at_most_0.07", "test_accent WER, beam + word n-gram, <= 0.07", WORD_LM,
          _value(sets, "test_accent", WORD_LM, "wer"), 0.07, "test_accent not scored")
    clean = _value(sets, "test", WORD_LM, "wer")
    for name in HARDER:
        what = f"{name} (mean over SNRs)" if name == "test_noisy" else name
        check(f"{name}_word_lm_wer_at_most_2x_test", f"{what} WER, beam + word n-gram, <= 2 x test's", WORD_LM,
              _value(sets, name, WORD_LM, "wer"), None if clean is None else 2 * clean,
              f"{name} or test not scored")
    if baseline is not None:
        old = baseline["sets"]
        for decoder, metric, label in (("greedy", "cer", "greedy_cer"), (WORD_LM, "wer", "word_lm_wer")):
            b = _value(old, "test", decoder, metric)
            check(f"test_{label}_within_10pct_of_baseline", f"test {metric.upper()} ({decoder}) <= 1.1 x the "
                  "baseline's", decoder, _value(sets, "test", decoder, metric), None if b is None else 1.1 * b,
                  "test not scored here" if b is not None else "the baseline record has no such figure for test",
                  baseline=b)
        for name in HARDER:
            b = _value(old, name, WORD_LM, "wer")
            check(f"{name}_word_lm_wer_40pct_below_baseline", f"{name} WER, beam + word n-gram, <= 0.6 x the "
                  "baseline's", WORD_LM, _value(sets, name, WORD_LM, "wer"), None if b is None else 0.6 * b,
                  f"{name} not scored here" if b is not None else f"the baseline record has no {name} figure",
                  baseline=b)
    return checks


def baseline_figure(baseline: dict, subset: dict | None) -> dict:
    """Where the baseline figures came from, for the record (the baseline file may be overwritten later)."""
    out = {k: baseline[k] for k in ("file", "name", "git_commit", "date", "subset")}
    if baseline.get("subset") != subset:
        out["note"] = (f"scored on {baseline.get('subset') or 'whole sets'}, this run on {subset or 'whole sets'}: "
                       "the comparisons are between different utterances")
    return out
