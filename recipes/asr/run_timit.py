"""TIMIT phone recognition from your copy of the corpus to a release with a model card, in numbered idempotent stages.

    python recipes/asr/run_timit.py --timit-root /corpora/TIMIT --exp ~/speechdraw-runs/timit
    python recipes/asr/run_timit.py ... --stage 3 --stop-stage 3       # evaluation only

TIMIT is licensed by the LDC (LDC93S1): there is no download stage, --timit-root points at a local copy in the LDC
layout (TRAIN/DR1/FCJF0/SA1.WAV with .PHN/.WRD/.TXT beside it; upper or lower case).

The setup Graves et al. (2013, "Speech recognition with deep recurrent neural networks") report: the 462-speaker
training set without the SA1/SA2 dialect sentences (3,696 utterances), the 50-speaker development set for choosing the
checkpoint, the 24-speaker core test set (192 utterances), and the phone error rate over the 39 folded phones of Lee &
Hon (1989): PER = (substitutions + deletions + insertions) / reference phones, summed over the set, "sil" included,
the glottal stop q deleted. Here the 61 labels are folded to 39 before training (data_prep/timit.py,
speechdraw.asr.text.fold_timit_phones) and the model outputs the 39 directly, rather than training on 61 and folding
the output for scoring as Graves et al. did; the scoring alphabet is the same.

Stages (each skipped when its stamp and outputs exist: see recipes/asr/stages.py):
  0 check     the layout: TRAIN/ and TEST/, speakers per part, the core test speakers present -> <exp>/data/layout.json
  1 manifests data_prep/timit.py: <exp>/data/{train,dev,test}_phones.jsonl (and the word manifests beside them)
  2 train     recipes/asr/train.py --preset gpu --data.tokens phones under torchrun on --nproc processes -> <exp>/am
  3 evaluate  recipes/asr/evaluate.py on dev and the core test set, greedy -> <exp>/eval.json and the PER record
              <exp>/asr_timit.json
  4 release   recipes/asr/export.py --release --archive -> <exp>/<name>.tar.gz with its model card

No language model or beam search: the beam decoder (speechdraw.asr.beam) needs a word separator in the token set,
which the phone set has not; Graves et al.'s CTC figures need none either. --train-args and --eval-args pass extra
options to the stage's script. tests/test_run_timit.py runs every stage on a miniature TIMIT tree.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from stages import REPO, Stages, add_stage_arguments, default_nproc, python, sh, torchrun

sys.path.insert(0, str(REPO / "data_prep"))  # the data_prep scripts import their siblings by name
import timit as corpus  # noqa: E402

from speechdraw.asr.metrics import ErrorRates  # noqa: E402
from speechdraw.asr.text import TokenSet  # noqa: E402

STAGES = ("check", "manifests", "train", "evaluate", "release")
TRAIN_SPEAKERS = 462
CARD = {
    "description": "English phone recognition (39 TIMIT phones): BiLSTM-CTC acoustic model, greedy decoding",
    "trained_on": "TIMIT (LDC93S1) training set: 462 speakers, 3,696 utterances (SA sentences left out), 16 kHz read "
                  "speech; phone labels folded from 61 to 39 (Lee & Hon 1989)",
    "has_seen": "read American English sentences, studio microphone, 8 dialect regions",
    "has_not_seen": "spontaneous speech, noise, telephone or far-field audio, other languages; it outputs phones, "
                    "not words",
    "licence": "TIMIT is licensed by the LDC (LDC93S1): the model was trained on licensed data; check your LDC licence "
               "before sharing it",
    "train_better": "Train longer, with speed perturbation and SpecAugment (the gpu preset), and average checkpoints.",
}


def phone_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus PER over space-separated phone strings: total edit operations / total reference phones (a phone string
    is to ErrorRates what a sentence of words is, so its word error rate is the PER)."""
    rates = ErrorRates.empty()
    for ref, hyp in zip(refs, hyps):
        rates.add(ref, hyp)
    return rates.wer


def check_layout(root: Path) -> dict:
    """Speakers per part and the core test speakers found; an error when TRAIN/ or TEST/ is missing."""
    report: dict = {"root": str(root)}
    for part in ("TRAIN", "TEST"):
        part_dir = corpus.child(root, part)
        if part_dir is None:
            raise SystemExit(f"{root}: no {part}/ directory (expected the LDC layout {root}/{part}/DR1/...)")
        report[part.lower() + "_speakers"] = sorted(p.name.upper() for p in part_dir.glob("*/*") if p.is_dir())
    core = {s.upper() for s in corpus.CORE_TEST_SPEAKERS}
    report["core_test_speakers_found"] = sorted(core & set(report["test_speakers"]))
    n_train = len(report["train_speakers"])
    if n_train != TRAIN_SPEAKERS or len(report["core_test_speakers_found"]) != len(core):
        print(f"warning: {root}: {n_train} training speakers (the standard set has {TRAIN_SPEAKERS}) and "
              f"{len(report['core_test_speakers_found'])} of the {len(core)} core test speakers: figures are not "
              f"comparable with published ones", file=sys.stderr)
    return report


def main(argv=None) -> Stages:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timit-root", type=Path, required=True, help="the TIMIT directory holding TRAIN/ and TEST/ "
                    "(required)")
    ap.add_argument("--exp", type=Path, required=True, help="the run's directory (required)")
    ap.add_argument("--preset", default="gpu", help="recipes/asr/train.py preset (default: gpu)")
    ap.add_argument("--nproc", type=int, default=None, help="training processes (default: one per GPU, else 1)")
    ap.add_argument("--name", default="asr-en-timit-phones", help="release name (default: asr-en-timit-phones)")
    ap.add_argument("--jobs", type=int, default=8, help="threads reading audio headers (default: 8)")
    for stage in ("train", "eval"):
        ap.add_argument(f"--{stage}-args", default="", help=f"extra options for the {stage} stage's script")
    add_stage_arguments(ap, STAGES)
    args = ap.parse_args(argv)
    root, exp = args.timit_root.expanduser().resolve(), args.exp.expanduser().resolve()
    if not root.is_dir():
        ap.error(f"--timit-root {root}: no such directory (TIMIT is licensed: point it at your copy)")
    data, am = exp / "data", exp / "am"
    stages = Stages(exp, args.stage, args.stop_stage)

    def check():
        data.mkdir(parents=True, exist_ok=True)
        (data / "layout.json").write_text(json.dumps(check_layout(root), indent=1) + "\n")

    stages.run(0, "check", [data / "layout.json"], check)

    stages.run(1, "manifests", [data / f"{s}_phones.jsonl" for s in ("train", "dev", "test")],
               lambda: corpus.main(["--root", str(root), "--out", str(data), "--jobs", str(args.jobs)]))

    stages.run(2, "train", [am / "release" / "config.json"], lambda: sh(torchrun(
        "recipes/asr/train.py", args.nproc or default_nproc(), "--preset", args.preset,
        "--data.train", data / "train_phones.jsonl", "--data.dev", data / "dev_phones.jsonl",
        "--data.tokens", "phones", "--model.vocab_size", len(TokenSet.phonemes()) + 1, "--train.run_dir", am,
        "--train.resume", "auto", *shlex.split(args.train_args))))

    def evaluate():
        sh(python("recipes/asr/evaluate.py", "--model", am / "release", "--manifest", data / "dev_phones.jsonl",
                  data / "test_phones.jsonl", "--json", exp / "eval.json", "--per-utt", *shlex.split(args.eval_args)))
        figures = {}
        for r in json.loads((exp / "eval.json").read_text())["results"]:
            u = r["per_utterance"]
            per = phone_error_rate([x["ref"] for x in u], [x["hyp"] for x in u])
            split = Path(r["manifest"]).stem.removesuffix("_phones")
            figures[split] = {"greedy": {"per": per, "utterances": r["utterances"], "phones": r["word_errors"]["ref"],
                                         "sub": r["word_errors"]["sub"], "del": r["word_errors"]["del"],
                                         "ins": r["word_errors"]["ins"]}}
            print(f"{split}: PER {100 * per:.2f}% over {r['word_errors']['ref']} phones, {r['utterances']} utterances")
        (exp / "asr_timit.json").write_text(json.dumps({"name": "asr_timit", "figures": figures}, indent=1) + "\n")

    stages.run(3, "evaluate", [exp / "eval.json", exp / "asr_timit.json"], evaluate)

    def release_archive():
        per = json.loads((exp / "asr_timit.json").read_text())["figures"]["test"]["greedy"]["per"]
        sh(python("recipes/asr/export.py", "--release", am / "release", "--archive", exp / f"{args.name}.tar.gz",
                  "--name", args.name, "--record", exp / "asr_timit.json",
                  "--headline", f"core test PER {100 * per:.2f}% (greedy, 39 phones)",
                  *[x for key, text in CARD.items() for x in ("--" + key.replace("_", "-"), text)]))

    stages.run(4, "release", [exp / f"{args.name}.tar.gz"], release_archive)
    return stages


if __name__ == "__main__":
    main(sys.argv[1:])
