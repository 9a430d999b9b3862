"""`speechdraw transcribe`: audio files, directories or a list of paths on stdin -> text, JSON, subtitles, word tables.

    speechdraw transcribe talk.flac --model runs/asr-tiny/release                  # text on stdout
    speechdraw transcribe recordings/ --model REL --format all --output-dir out/   # out/<same tree>/*.txt .json ...
    find . -name '*.mp3' | speechdraw transcribe - --model REL --lm word4.arpa --lexicon lexicon.txt --format srt \\
        --output-dir subs/

Output files mirror the inputs' paths relative to their common parent directory, so a/x.wav and b/x.wav become
out/a/x.txt and out/b/x.txt; inputs in one directory whose names would clash keep their extension (x.wav, x.mp3 ->
x.wav.txt, x.mp3.txt; with x.wav.flac beside them, x.wav.flac.txt), so no two inputs share an output file. Without
--output-dir the chosen format goes to stdout (JSON as one object per line for several files; other formats under a
`==> path <==` header per file).

A file that cannot be transcribed (unreadable, empty, no samples) is reported on stderr by name with the reason; the
others are still transcribed. Exit status 0 only if every file succeeded (1 otherwise, 2 for bad arguments), after a
summary line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

# Extensions searched for in directories, each with the libsndfile format that reads it (all in
# soundfile.available_formats(); WavPack, .wv, is not among them).
AUDIO_FORMATS = {".wav": "WAV", ".wave": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".opus": "OGG",
                 ".mp3": "MP3", ".aif": "AIFF", ".aiff": "AIFF", ".aifc": "AIFF", ".au": "AU", ".snd": "AU",
                 ".w64": "W64", ".rf64": "RF64", ".caf": "CAF", ".sph": "NIST", ".nist": "NIST"}
# On top of those, what FFmpeg reads through PyAV (m4a/AAC, video files' audio, WebM, WMA, ...: speechdraw.asr.media;
# listed here too so that `--help` does not import PyAV).
MEDIA_EXTENSIONS = frozenset({".m4a", ".m4b", ".mp4", ".m4v", ".aac", ".mov", ".mkv", ".mka", ".webm", ".wma",
                              ".wmv", ".asf", ".avi", ".ac3", ".amr", ".3gp", ".mpg", ".mpeg", ".ts", ".flv"})
AUDIO_EXTENSIONS = frozenset(AUDIO_FORMATS) | MEDIA_EXTENSIONS
FORMAT_CHOICES = ("txt", "json", "srt", "vtt", "tsv", "all")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files, directories (searched recursively for audio files) or - (read paths from stdin, "
                        "one per line)")
    p.add_argument("--model", default=None, help="model name (`speechdraw models list`), speech release directory "
                   "(recipes/asr/train.py or export.py), release archive or its URL (default: the default speech "
                   "model, asr-en-synth unless models/registry.json names another)")
    p.add_argument("--lm", help="ARPA n-gram for beam search: word-level with --lexicon, character-level without "
                                "(default: the release's tuned decoder, if it has one)")
    p.add_argument("--lexicon", help="lexicon file (word<TAB>w o r d) for lexicon-constrained beam search")
    p.add_argument("--lm-weight", type=float, help="LM weight (default: the release's tuned value, else 0.5)")
    p.add_argument("--word-score", type=float, help="score added per word with a lexicon (default: tuned, else 0)")
    p.add_argument("--rescore-lm", metavar="DIR", help="LSTM-LM release (recipes/asr/train_lm.py): re-rank the "
                                                       "beam's N-best list")
    p.add_argument("--rescore-weight", type=float, help="weight of the LSTM LM's log-probability "
                   "(default: the release's tuned weight, or 0.5 where it has none or tuned it to 0)")
    p.add_argument("--beam", type=int, help="beam size (implies beam search; default: 50 or the release's)")
    p.add_argument("--nbest", type=int, default=1, help="alternatives per chunk in the JSON output; > 1 implies beam "
                                                        "search (default: 1)")
    p.add_argument("--hotwords", metavar="FILE", help="words or phrases to favour, one per line with an optional bonus "
                   "('Zebulun 4.0'; default bonus 5); missing ones join the lexicon (needs lexicon beam search)")
    p.add_argument("--greedy", action="store_true", help="greedy decoding even if the release has a tuned decoder")
    p.add_argument("--format", default="txt", choices=FORMAT_CHOICES, help="output format (default: txt)")
    p.add_argument("--output-dir", help="write one file per input and format here (default: print to stdout)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    add_threads_precision(p)
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"),
                   help="run the acoustic model in PyTorch, or the release's model.onnx in onnxruntime on the CPU "
                        "(recipes/asr/export.py --onnx; needs speechdraw[onnx]) (default: torch)")
    p.add_argument("--batch-size", type=int, default=8, help="audio chunks per forward pass (default: 8)")
    p.add_argument("--max-chunk", type=float, default=20.0,
                   help="longest stretch of audio fed to the model at once, seconds (default: 20)")
    p.add_argument("--max-line-width", type=int, default=42, help="subtitles: characters per line (default: 42)")
    p.add_argument("--max-line-count", type=int, default=2, help="subtitles: lines per cue (default: 2)")
    p.add_argument("--max-cue-seconds", type=float, default=7.0, help="subtitles: seconds on screen (default: 7)")
    p.add_argument("--highlight-words", action="store_true",
                   help="subtitles: word-level karaoke, each word underlined while it is spoken (as whisper does)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar; the summary line only when a file failed (errors are always printed)")


def add_threads_precision(p: argparse.ArgumentParser) -> None:
    """--threads and --precision, as `transcribe` and `sample` take them (speechdraw.engine.device)."""
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0: the CPUs this process may use "
                   "that are idle (affinity minus load average, at least 1) (default: 0)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="model arithmetic: bf16 on a CPU or a GPU that has it, fp16 on CUDA only (default: fp32)")


def collect_inputs(inputs: list[str], stdin=None) -> list[Path]:
    """Expand directories (recursively, audio extensions only, sorted) and `-` (paths from stdin); drop duplicates.
    Explicitly named files are kept whatever their extension, and missing ones too (they fail by name later)."""
    out: list[Path] = []
    for item in inputs:
        if item == "-":
            lines = (stdin or sys.stdin).read().splitlines()
            out += [Path(line.strip()) for line in lines if line.strip()]
        elif Path(item).is_dir():
            out += sorted(p for p in Path(item).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        else:
            out.append(Path(item))
    seen, unique = set(), []
    for p in out:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def output_stems(paths: list[Path]) -> list[Path]:
    """Each input's output path without the format extension, relative to the inputs' common parent directory."""
    absolute = [Path(os.path.abspath(p)) for p in paths]
    if not absolute:
        return []
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    rel = [p.relative_to(root) for p in absolute]
    names = [r.with_suffix("") for r in rel]  # x.wav -> x
    # Inputs whose names clash keep their extension (x.wav + x.mp3 -> x.wav.*, x.mp3.*); that may clash again with
    # another's stem (x.wav.flac -> x.wav), which then keeps its extension too, until every name is unique. The full
    # relative paths are unique (inputs are deduplicated), so this ends.
    while True:
        seen: dict[Path, int] = {}
        for n in names:
            seen[n] = seen.get(n, 0) + 1
        clash = [i for i, n in enumerate(names) if seen[n] > 1 and n != rel[i]]
        if not clash:
            return names
        for i in clash:
            names[i] = rel[i]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from speechdraw.asr.audio import AudioError, audio_info
    from speechdraw.asr.segment import SegmentConfig
    from speechdraw.asr.transcribe import Transcriber
    from speechdraw.asr.transcript import CueLimits
    from speechdraw.asr.writers import FORMATS, WRITERS, transcript_json
    from speechdraw.engine.device import inference_precision, resolve_device, set_threads
    from speechdraw.engine.release import ReleaseError
    from speechdraw.models import resolve_model

    formats = FORMATS if args.format == "all" else (args.format,)
    if args.output_dir is None and len(formats) > 1:
        print("speechdraw transcribe: --format all needs --output-dir", file=sys.stderr)
        return 2
    paths = collect_inputs(args.inputs)
    if not paths:
        print("speechdraw transcribe: no audio files found in the inputs", file=sys.stderr)
        return 2
    try:
        set_threads(args.threads)
        inference_precision(args.precision, resolve_device(args.device))  # bad arguments first, before the model
        model = resolve_model(args.model, kind="asr")  # a name, directory, archive or URL; None: the default
        tr = Transcriber(model, device=args.device, lm=args.lm, lexicon=args.lexicon, lm_weight=args.lm_weight,
                         word_score=args.word_score, beam=args.beam, nbest=args.nbest, rescore_lm=args.rescore_lm,
                         rescore_weight=args.rescore_weight, greedy=args.greedy, batch_size=args.batch_size,
                         segment=SegmentConfig(max_chunk=args.max_chunk), hotwords=args.hotwords,
                         precision=args.precision, backend=args.backend,
                         cues=CueLimits(max_chars=args.max_line_width, max_lines=args.max_line_count,
                                        max_duration=args.max_cue_seconds))
    except (ReleaseError, OSError, ValueError) as e:  # a bad --model, --lm, --lexicon, --device ...: one line
        print(f"speechdraw transcribe: error: {e}", file=sys.stderr)
        return 2
    if args.highlight_words:
        WRITERS = {**WRITERS, "srt": functools.partial(WRITERS["srt"], highlight_words=True),
                   "vtt": functools.partial(WRITERS["vtt"], highlight_words=True)}
    stems = output_stems(paths)
    total = 0.0
    for p in paths:  # headers only: the bar's total
        try:
            total += audio_info(p).duration
        except AudioError:
            pass
    t0 = time.perf_counter()
    failed, done_seconds = 0, 0.0
    # disable=None: no bar when stderr is not a terminal (logs stay clean).
    bar = tqdm(total=round(total, 1), unit="s", desc=f"0/{len(paths)} files", file=sys.stderr,
               disable=True if args.quiet else None, dynamic_ncols=True,
               bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")

    def progress(seconds: float) -> None:
        bar.update(min(seconds, bar.total - bar.n) if bar.total else 0)

    out_dir = Path(args.output_dir) if args.output_dir is not None else None
    for i, (t, stem) in enumerate(zip(tr.iter_transcribe(paths, on_progress=progress), stems), 1):
        bar.set_description_str(f"{i}/{len(paths)} files")
        if not t.ok:
            failed += 1
            tqdm.write(f"error: {t.path}: {t.error}", file=sys.stderr)
            continue
        done_seconds += t.duration
        if out_dir is not None:
            for fmt in formats:
                dest = out_dir / stem.parent / f"{stem.name}.{fmt}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(WRITERS[fmt](t), encoding="utf-8")
        else:
            fmt = formats[0]
            if fmt == "json":
                text = json.dumps(transcript_json(t), ensure_ascii=False) + "\n" if len(paths) > 1 else WRITERS[fmt](t)
            else:
                text = (f"==> {t.path} <==\n" if len(paths) > 1 else "") + WRITERS[fmt](t)
            with tqdm.external_write_mode(file=sys.stderr):
                sys.stdout.write(text)
                sys.stdout.flush()
    bar.close()
    elapsed = time.perf_counter() - t0
    ok = len(paths) - failed
    if not args.quiet or failed:
        rtf = f", RTF {elapsed / done_seconds:.3f}" if done_seconds else ""
        print(f"speechdraw transcribe: {ok} of {len(paths)} files transcribed, {failed} failed; "
              f"{done_seconds:.1f} s of audio in {elapsed:.1f} s{rtf} ({tr.description})", file=sys.stderr)
    return 0 if failed == 0 else 1
