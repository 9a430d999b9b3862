"""Write the speech release from a training checkpoint: model.pt, config.json, tokens.txt, feature_stats.json.

    python recipes/asr/export.py --checkpoint ~/speechdraw-runs/asr-cpu/checkpoints/best.pt \\
        --out ~/speechdraw-runs/asr-cpu/release
    python recipes/asr/export.py --run ~/speechdraw-runs/asr-cpu --out release-latest --which latest --weights model

Training already exports best.pt to <run>/release when it finishes; this is for other checkpoints, other weights, or a
run that has not finished. The release loads with `speechdraw.asr.release.load_speech_release` (weights-only, strict).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechdraw.asr.release import export_checkpoint, load_speech_release
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
    args = ap.parse_args(argv)

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
    asr = load_speech_release(out)  # prove it loads the way inference will load it
    print(f"wrote {out} from {path} (step {state['loop']['step']}, epoch {state['loop']['epoch']}, "
          f"{asr.config['metrics']['weights']} weights, {asr.model.num_params() / 1e6:.2f} M parameters)")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
