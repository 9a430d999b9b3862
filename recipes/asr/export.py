"""Write the speech release from a training checkpoint: model.pt, config.json, tokens.txt, feature_stats.json.

    python recipes/asr/export.py --checkpoint ~/speechdraw-runs/asr-cpu/checkpoints/best.pt \\
        --out ~/speechdraw-runs/asr-cpu/release
    python recipes/asr/export.py --run ~/speechdraw-runs/asr-cpu --out release-latest --which latest --weights model

Training already exports best.pt to <run>/release when it finishes; this is for other checkpoints, other weights, or a
run that has not finished. The release loads with `speechdraw.asr.release.load_speech_release` (weights-only, strict).

With --decoder (a decoder.json, e.g. one tune_decoder.py wrote into another release) the release also gets beam search:
its settings, its LM and lexicon (or --lm / --lexicon instead), and with --rnnlm an LSTM LM for N-best rescoring:

    python recipes/asr/export.py --run ~/speechdraw-runs/asr-cpu --out release-lm \
        --decoder ~/speechdraw-runs/lm/interim-release/decoder.json --rnnlm ~/speechdraw-runs/lm/rnnlm/release

Weights tuned for one acoustic model are only a starting point for another: rerun tune_decoder.py on the new release.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from speechdraw.asr.beam import BeamConfig
from speechdraw.asr.release import add_decoder, export_checkpoint, load_speech_release
from speechdraw.engine.checkpoint import CheckpointManager, load_checkpoint


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a resume checkpoint file (ckpt-*.pt or best.pt)")
    src.add_argument("--run", help="a run directory: take --which checkpoint from its checkpoints/")
    ap.add_argument("--which", choices=["best", "latest"], default="best", help="with --run (default: best)")
    ap.add_argument("--weights", choices=["auto", "ema", "model"], default="auto",
                    help="EMA average or raw weights; auto = EMA when the run kept one (default: auto)")
    ap.add_argument("--out", required=True, help="release directory to write (required)")
    ap.add_argument("--decoder", default=None, help="decoder.json with beam-search settings; its lexicon/lm paths "
                    "are relative to its directory (default: none, greedy only)")
    ap.add_argument("--lm", default=None, help="with --decoder: this ARPA file instead of the one it names")
    ap.add_argument("--lexicon", default=None, help="with --decoder: this lexicon instead of the one it names "
                    "('' for lexicon-free)")
    ap.add_argument("--rnnlm", default=None, help="LSTM LM release directory for N-best rescoring (default: none)")
    args = ap.parse_args(argv)
    if (args.lm is not None or args.lexicon is not None or args.rnnlm) and not args.decoder:
        ap.error("--lm/--lexicon/--rnnlm need --decoder: the tuned beam settings they go with (rescoring "
                 "re-ranks the beam's N-best list)")

    if args.checkpoint:
        path = Path(args.checkpoint)
    elif args.which == "best":
        path = Path(args.run) / "checkpoints" / "best.pt"
    else:
        found = CheckpointManager(Path(args.run) / "checkpoints").list()
        if not found:
            raise SystemExit(f"{args.run}: no checkpoints")
        path = found[0][1]
    state = load_checkpoint(path)
    out = export_checkpoint(state, args.out, weights=args.weights, metrics={"checkpoint": str(path)})
    if args.decoder:
        cfg = BeamConfig.load(args.decoder)
        base = Path(args.decoder).parent
        files = {k: str((base / getattr(cfg, k)).resolve()) if getattr(cfg, k) else "" for k in ("lexicon", "lm")}
        files.update({k: str(Path(v).resolve()) if v else "" for k, v in (("lm", args.lm), ("lexicon", args.lexicon))
                      if v is not None})
        add_decoder(out, dataclasses.replace(cfg, **files), rnnlm=args.rnnlm)
    asr = load_speech_release(out)  # prove it loads the way inference will load it
    print(f"wrote {out} from {path} (step {state['loop']['step']}, epoch {state['loop']['epoch']}, "
          f"{asr.config['metrics']['weights']} weights, {asr.model.num_params() / 1e6:.2f} M parameters)")
    if asr.beam_config is not None:
        print(f"beam search: {asr.beam_config.mode}, lm_weight {asr.beam_config.lm_weight}, word_score "
              f"{asr.beam_config.word_score}, sil_score {asr.beam_config.sil_score}; rescoring "
              f"{'weight ' + str(asr.beam_config.rescore_weight) if asr.rescorer_dir else 'none'}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
