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

With --archive it also writes a release archive to share or ship (speechdraw/models.py): weights as safetensors stored
in fp16 (or bf16; fp32 again when loaded), every file of the release (decoder, LMs, lexicon), and a model card
(card.json + README.md) with what the model has and has not heard, the figures of the --record files measured on it,
and how to train a better one. --release archives an existing release as it is:

    python recipes/asr/export.py --release ~/speechdraw-runs/asr-v45/release --archive models/asr-en-synth.tar.gz \
        --record bench/results/asr_quality.json --record bench/results/asr_decode.json --registry models/registry.json
    speechdraw models pull models/asr-en-synth.tar.gz && speechdraw transcribe talk.wav --model asr-en-synth

With --onnx the release also gets model.onnx, the acoustic model for onnxruntime (needs speechdraw[onnx]; with
--archive it goes into the archive too). The graph takes normalised log-mel features, which PyTorch computes before it
(speechdraw/asr/onnx.py says what is in it and why):

    python recipes/asr/export.py --release ~/speechdraw-runs/asr-cpu/release --onnx
    speechdraw transcribe talk.wav --model ~/speechdraw-runs/asr-cpu/release --backend onnxruntime
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from speechdraw.asr.beam import BeamConfig
from speechdraw.asr.onnx import export_onnx
from speechdraw.asr.release import add_decoder, export_checkpoint, load_speech_release
from speechdraw.engine.checkpoint import CheckpointManager, load_checkpoint
from speechdraw.models import ModelError, add_archive_arguments, archive_from_args

CARD = {
    "name": "asr-en-synth",
    "description": "English speech recognition: BiLSTM-CTC acoustic model with its tuned beam-search decoder "
                   "(word 4-gram on everyday English + lexicon, LSTM LM rescoring)",
    "trained_on": "10 h of synthetic English speech (data_prep/synth_speech.py): World English Bible sentences spoken "
                  "by espeak-ng (7 accents x 45 voice variants, 70%) and by flite (kal, kal16, awb) and festival "
                  "(kal_diphone) (30%); training augmentation: simulated rooms, coloured / hum / tonal / babble noise "
                  "at 0-30 dB, telephone band, MP3/Opus round trips, EQ, gain and clipping, pitch shift, speed "
                  "perturbation, VTLP and SpecAugment (speechdraw/asr/augment.py); 20 epochs of the cpu preset, then "
                  "22 epochs fine-tuned on the same corpus with half the augmentation probabilities (5, 6, 6, then 5 "
                  "more: the best dev epoch of a 6-epoch restart)",
    "has_seen": "synthetic English from espeak-ng, flite and festival voices, read sentences in Bible English, through "
                "simulated rooms, noise, phone lines and codecs",
    "has_not_seen": "human speech of any kind (not trained on a single human recording), any synthesizer voice but "
                    "the ones above (measured on one it never heard: test_voice, flite rms), spontaneous or "
                    "conversational speech, children, other languages: expect far higher error rates on real "
                    "recordings than on the synthetic test sets",
    "licence": "text: World English Bible (public domain); audio synthesised with espeak-ng (GPL-3.0), flite "
               "(BSD-style) and festival (X11-style); word LM text adds WordNet 3.0 glosses and examples (WordNet "
               "licence), chatterbot-corpus (BSD-3-Clause) and The Devil's Dictionary (public domain)",
    "train_better": "Train on a real corpus: python recipes/asr/run_librispeech.py (download -> manifests -> LM -> "
                    "training -> tuning -> release; recipes/asr/README.md), or data_prep/commonvoice.py / "
                    "data_prep/folder.py for any folder of audio + transcripts, then python recipes/asr/train.py "
                    "--preset gpu --data.train TRAIN.jsonl --data.dev DEV.jsonl --train.run_dir RUN, an n-gram LM on "
                    "in-domain text (recipes/asr/train_ngram.py), recipes/asr/tune_decoder.py on the dev set, and "
                    "this script with --archive.",
}
# Figures a card takes from each benchmark record, by the record's name: label -> dotted key under "figures".
FIGURES = {
    "asr_quality": {"test CER, greedy": "test.greedy.cer", "test WER, greedy": "test.greedy.wer",
                    "test_accent CER, greedy": "test_accent.greedy.cer", "test utterances": "test.utterances",
                    "test_voice (unseen voice) CER, greedy": "test_voice.greedy.cer"},
    "asr_decode": {"test WER, greedy": "test.greedy.wer", "test WER, beam + word n-gram": "test.beam_word_ngram.wer",
                   "test WER, beam + word n-gram + LSTM rescoring": "test.beam_word_ngram_lstm.wer",
                   "test_accent WER, beam + word n-gram": "test_accent.beam_word_ngram.wer",
                   "test_noisy (mean over SNRs) WER, beam + word n-gram": "test_noisy.snr_mean.beam_word_ngram.wer",
                   "test_reverb WER, beam + word n-gram": "test_reverb.beam_word_ngram.wer",
                   "test_phone WER, beam + word n-gram": "test_phone.beam_word_ngram.wer",
                   "test utterances": "test.utterances"},
    # Written by the corpus runners (recipes/asr/run_librispeech.py, run_timit.py) into their run directory.
    "asr_librispeech": {f"{s} WER, {d}": f"{s}.{d}.wer" for s in ("test-clean", "test-other", "dev-clean", "dev-other")
                        for d in ("greedy", "beam")},
    "asr_timit": {"core test PER, greedy": "test.greedy.per", "dev PER, greedy": "dev.greedy.per",
                  "core test utterances": "test.greedy.utterances"},
}


def headline(records: list[dict]) -> str:
    figures = {r["record"]: r["figures"] for r in records}
    wer = figures.get("asr_decode", {}).get("test WER, beam + word n-gram")
    if wer is not None:
        return f"test WER {100 * wer:.2f}% (beam + word n-gram, synthetic speech)"
    cer = figures.get("asr_quality", {}).get("test CER, greedy")
    return f"test CER {100 * cer:.2f}% (greedy, synthetic speech)" if cer is not None else ""


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a resume checkpoint file (ckpt-*.pt or best.pt)")
    src.add_argument("--run", help="a run directory: take --which checkpoint from its checkpoints/")
    src.add_argument("--release", help="an existing release directory: only write its --archive")
    ap.add_argument("--which", choices=["best", "latest"], default="best", help="with --run (default: best)")
    ap.add_argument("--weights", choices=["auto", "ema", "model"], default="auto",
                    help="EMA average or raw weights; auto = EMA when the run kept one (default: auto)")
    ap.add_argument("--out", default=None, help="release directory to write (required unless --release)")
    ap.add_argument("--decoder", default=None, help="decoder.json with beam-search settings; its lexicon/lm paths "
                    "are relative to its directory (default: none, greedy only)")
    ap.add_argument("--lm", default=None, help="with --decoder: this ARPA file instead of the one it names")
    ap.add_argument("--lexicon", default=None, help="with --decoder: this lexicon instead of the one it names "
                    "('' for lexicon-free)")
    ap.add_argument("--rnnlm", default=None, help="LSTM LM release directory for N-best rescoring (default: none)")
    ap.add_argument("--onnx", action="store_true", help="also write model.onnx into the release, the acoustic model "
                    "for `speechdraw transcribe --backend onnxruntime` (needs speechdraw[onnx])")
    add_archive_arguments(ap, CARD)
    args = ap.parse_args(argv)
    if args.release:
        if args.out or args.decoder or not (args.archive or args.onnx):
            ap.error("--release takes an existing release as it is: give --archive or --onnx, not --out or --decoder")
        asr = load_speech_release(args.release)  # refuse what inference could not load
        if args.onnx:
            print(f"wrote {export_onnx(asr)}")
        if args.archive:
            archive_from_args(args, args.release, FIGURES, headline)
        return Path(args.release)
    if not args.out:
        ap.error("--out is required with --checkpoint or --run")
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
    if args.onnx:
        print(f"wrote {export_onnx(asr)}")
    if args.archive:
        archive_from_args(args, out, FIGURES, headline)
    return out


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ModelError, ValueError) as e:  # ValueError: e.g. --onnx without onnx installed
        raise SystemExit(f"recipes/asr/export.py: error: {e}") from e
