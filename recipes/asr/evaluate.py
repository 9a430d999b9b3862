"""Decode manifests with a speech release and score them: WER and CER as a table and as JSON.

    python recipes/asr/evaluate.py --model ~/speechdraw-runs/asr-cpu/release \\
        --manifest ~/speechdraw-runs/data/synth/test.jsonl ~/speechdraw-runs/data/synth/test_accent.jsonl \\
        --json results.json --errs errs.txt
    python recipes/asr/evaluate.py --model REL --manifest ... --decoder greedy beam rescore

--decoder: greedy; beam = the release's tuned beam search (decoder.json: n-gram LM, lexicon; written by
tune_decoder.py); rescore = beam search, then its N-best list re-ranked with the release's LSTM LM (rnnlm/). Several
decoders share one acoustic-model pass. Error rates are corpus totals (errors / reference length); CER counts spaces as
characters. The real-time factor is compute time / audio duration: am_rtf for features + model, decode_rtf for the
decoder alone, rtf for both (audio file decoding excluded; building the beam decoder, i.e. loading the LM, is reported
apart as decoder_load_seconds). Printed: the table, then icefall's errs-* report per manifest and decoder
(per-utterance aligned errors, the most frequent confusions); --errs writes it whole. This is `speechdraw evaluate`
(speechdraw/asr/evaluate_cmd.py, same flags, --model also takes a model name) run from a checkout; the scoring lives in
speechdraw/asr/evaluate.py.
"""

from __future__ import annotations

import argparse
import sys

from speechdraw.asr.evaluate import evaluate_manifest, format_errors, format_table
from speechdraw.asr.evaluate_cmd import add_arguments, run

__all__ = ["evaluate_manifest", "format_errors", "format_table", "main"]  # bench/asr_quality.py uses them from here


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
