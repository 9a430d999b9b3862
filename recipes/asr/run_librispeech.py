"""LibriSpeech from the published archives to a release with a model card, in numbered idempotent stages.

    python recipes/asr/run_librispeech.py --root ~/corpora --exp ~/speechdraw-runs/librispeech-100 \\
        --train-set clean-100                        # every stage, one process per GPU
    python recipes/asr/run_librispeech.py ... --stage 4 --stop-stage 4          # training only (resumes)
    python recipes/asr/run_librispeech.py ... --stage 5                         # from decoder tuning on

Stages (each skipped when its stamp and outputs exist: see recipes/asr/stages.py):
  0 download  the audio archives of the train set (--train-set clean-100 | clean-460 | 960) and of dev/test
              clean/other from openslr.org/12, librispeech-lm-norm.txt.gz from openslr.org/11, each checked against
              its published md5 sum (--checksums FILE for another mirror), then unpacked into --root
  1 manifests <exp>/data/<subset>.jsonl per subset; train.jsonl (the train set's subsets) and dev.jsonl (dev-clean +
              dev-other, for decoder tuning)
  2 lm_text   <exp>/data/lm_text.txt: the LM text normalised like the transcripts, dev/test sentences removed
  3 ngram     <exp>/lm/word4.arpa + lexicon.txt (recipes/asr/train_ngram.py; 4-gram, 3+-gram singletons pruned,
              the --lm-vocab most frequent words, 200k as in the published LibriSpeech 4-gram)
  4 train     recipes/asr/train.py --preset gpu under torchrun on --nproc processes (default: one per GPU); resumes
              with --train.resume auto after an interruption; <exp>/am/release
  5 tune      recipes/asr/tune_decoder.py on dev.jsonl -> <exp>/release (acoustic model + decoder.json + LM)
  6 evaluate  recipes/asr/evaluate.py on dev/test clean/other, greedy and beam -> <exp>/eval.json and a figures
              record <exp>/asr_librispeech.json
  7 release   recipes/asr/export.py --release --archive -> <exp>/<name>.tar.gz with its model card

--train-args, --ngram-args, --tune-args and --eval-args pass extra options to the stage's script (e.g. --train-args
"--train.epochs 2"). tests/test_run_librispeech.py runs every stage on a miniature mirror served on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from stages import REPO, Stages, add_stage_arguments, default_nproc, python, sh, torchrun

sys.path.insert(0, str(REPO / "data_prep"))  # the data_prep scripts import their siblings by name
import librispeech as corpus  # noqa: E402
from _common import extract, write_split  # noqa: E402

from speechdraw.asr.manifest import read_manifest  # noqa: E402

STAGES = ("download", "manifests", "lm_text", "ngram", "train", "tune", "evaluate", "release")
TRAIN_SETS = {"clean-100": ("train-clean-100",), "clean-460": ("train-clean-100", "train-clean-360"),
              "960": ("train-clean-100", "train-clean-360", "train-other-500")}
DEV, TEST = ("dev-clean", "dev-other"), ("test-clean", "test-other")
CARD = {
    "description": "English speech recognition trained on LibriSpeech: BiLSTM-CTC acoustic model with a word 4-gram "
                   "beam-search decoder tuned on dev-clean + dev-other",
    "has_seen": "read English audiobooks (LibriVox), 16 kHz, mostly close-talking, American accents prevail",
    "has_not_seen": "conversational or spontaneous speech, telephone or far-field audio, strong noise, accents far "
                    "from LibriVox readers, other languages",
    "licence": "LibriSpeech audio and text: CC BY 4.0 (Panayotov et al. 2015, openslr.org/12 and /11)",
    "train_better": "Train on all 960 h (--train-set 960), longer (more epochs), and add in-domain text to the LM.",
}


def main(argv=None) -> Stages:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("~/corpora").expanduser(),
                    help="where archives are downloaded (<root>/downloads) and unpacked (<root>/LibriSpeech) "
                         "(default: ~/corpora)")
    ap.add_argument("--exp", type=Path, required=True, help="the run's directory (required)")
    ap.add_argument("--train-set", choices=TRAIN_SETS, default="clean-100", help="clean-100, clean-460 (100 + 360) "
                    "or 960 (+ other-500) hours (default: clean-100)")
    ap.add_argument("--mirror", default=corpus.MIRROR, help=f"audio archives (default: {corpus.MIRROR})")
    ap.add_argument("--lm-mirror", default=corpus.LM_MIRROR, help=f"LM text (default: {corpus.LM_MIRROR})")
    ap.add_argument("--checksums", type=Path, default=None,
                    help="md5sum-format file with the archives' sums (default: the published ones)")
    ap.add_argument("--preset", default="gpu", help="recipes/asr/train.py preset (default: gpu)")
    ap.add_argument("--nproc", type=int, default=None, help="training processes (default: one per GPU, else 1)")
    ap.add_argument("--lm-vocab", type=int, default=200_000,
                    help="vocabulary limit of the word 4-gram, as in the published LibriSpeech LM (default: 200000)")
    ap.add_argument("--name", default=None, help="release name (default: asr-en-librispeech-<train set>)")
    ap.add_argument("--jobs", type=int, default=8, help="threads / processes for data preparation (default: 8)")
    for stage in ("train", "ngram", "tune", "eval"):
        ap.add_argument(f"--{stage}-args", default="", help=f"extra options for the {stage} stage's script")
    add_stage_arguments(ap, STAGES)
    args = ap.parse_args(argv)
    root, exp = args.root.expanduser().resolve(), args.exp.expanduser().resolve()
    data, lm, am, release = exp / "data", exp / "lm", exp / "am", exp / "release"
    train_subsets = TRAIN_SETS[args.train_set]
    subsets = (*train_subsets, *DEV, *TEST)
    name = args.name or f"asr-en-librispeech-{args.train_set}"
    checksums = corpus.read_checksums(args.checksums) if args.checksums else corpus.MD5
    stages = Stages(exp, args.stage, args.stop_stage)

    def download():
        for subset in subsets:
            extract(corpus.fetch(f"{subset}.tar.gz", args.mirror, root / "downloads", checksums), root)
        corpus.fetch(corpus.LM_TEXT, args.lm_mirror, root / "downloads", checksums)

    stages.run(0, "download", [root / "LibriSpeech" / s for s in subsets] + [root / "downloads" / corpus.LM_TEXT],
               download)

    def manifests():
        for subset in subsets:
            entries, skipped = corpus.read_subset(corpus.subset_dir(root, subset), args.jobs)
            if not entries:
                raise SystemExit(f"{root / 'LibriSpeech' / subset}: no utterances")
            write_split(data / f"{subset}.jsonl", entries, skipped)
        for out, parts in (("train", train_subsets), ("dev", DEV)):
            write_split(data / f"{out}.jsonl", [e for p in parts for e in read_manifest(data / f"{p}.jsonl")])

    stages.run(1, "manifests", [data / f"{s}.jsonl" for s in (*subsets, "train", "dev")], manifests)

    def lm_text():
        exclude = {e.text for s in (*DEV, *TEST) for e in read_manifest(data / f"{s}.jsonl")}
        corpus.write_lm_text(root / "downloads" / corpus.LM_TEXT, data / "lm_text.txt", exclude, args.jobs)

    stages.run(2, "lm_text", [data / "lm_text.txt"], lm_text)

    def ngram():
        sh(python("recipes/asr/train_ngram.py", "--text", data / "lm_text.txt", "--out", lm / "word4.arpa",
                  "--ngram.order", "4", "--ngram.prune", "0,0,1,1", "--lexicon", lm / "lexicon.txt",
                  "--eval", f"{data / 'dev-clean.jsonl'},{data / 'dev-other.jsonl'}", "--report", lm / "report.json",
                  "--ngram.vocab_size", args.lm_vocab, *shlex.split(args.ngram_args)))

    stages.run(3, "ngram", [lm / "word4.arpa", lm / "lexicon.txt"], ngram)

    stages.run(4, "train", [am / "release" / "config.json"], lambda: sh(torchrun(
        "recipes/asr/train.py", args.nproc or default_nproc(), "--preset", args.preset,
        "--data.train", data / "train.jsonl", "--data.dev", data / "dev-clean.jsonl", "--train.run_dir", am,
        "--train.resume", "auto", *shlex.split(args.train_args))))

    stages.run(5, "tune", [release / "decoder.json"], lambda: sh(python(
        "recipes/asr/tune_decoder.py", "--model", am / "release", "--out", release, "--manifest", data / "dev.jsonl",
        "--lexicon", lm / "lexicon.txt", "--word-lm", lm / "word4.arpa", "--cache", lm / "dev-logprobs.pt",
        "--write", "lexicon", *shlex.split(args.tune_args))))

    def evaluate():
        sh(python("recipes/asr/evaluate.py", "--model", release, "--manifest",
                  *[data / f"{s}.jsonl" for s in (*DEV, *TEST)], "--decoder", "greedy", "beam",
                  "--json", exp / "eval.json", *shlex.split(args.eval_args)))
        results = json.loads((exp / "eval.json").read_text())["results"]
        figures: dict = {}
        for r in results:
            figures.setdefault(Path(r["manifest"]).stem, {})[r["decoder"]] = {
                "wer": r["wer"], "cer": r["cer"], "utterances": r["utterances"]}
        (exp / "asr_librispeech.json").write_text(json.dumps(
            {"name": "asr_librispeech", "train_set": args.train_set, "figures": figures}, indent=1) + "\n")

    stages.run(6, "evaluate", [exp / "eval.json", exp / "asr_librispeech.json"], evaluate)

    def release_archive():
        figures = json.loads((exp / "asr_librispeech.json").read_text())["figures"]
        headline = (f"test-clean WER {100 * figures['test-clean']['beam']['wer']:.2f}%, test-other "
                    f"{100 * figures['test-other']['beam']['wer']:.2f}% (beam + word 4-gram)")
        hours = {"clean-100": "100", "clean-460": "460", "960": "960"}[args.train_set]
        sh(python("recipes/asr/export.py", "--release", release, "--archive", exp / f"{name}.tar.gz",
                  "--name", name, "--record", exp / "asr_librispeech.json", "--headline", headline,
                  "--description", CARD["description"], "--has-seen", CARD["has_seen"],
                  "--has-not-seen", CARD["has_not_seen"], "--licence", CARD["licence"],
                  "--train-better", CARD["train_better"],
                  "--trained-on", f"LibriSpeech {', '.join(train_subsets)} ({hours} h of read English audiobooks); "
                                  f"word 4-gram on librispeech-lm-norm.txt (dev/test sentences removed)"))

    stages.run(7, "release", [exp / f"{name}.tar.gz"], release_archive)
    return stages


if __name__ == "__main__":
    main(sys.argv[1:])
