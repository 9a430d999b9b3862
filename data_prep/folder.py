"""A manifest for any folder of audio files with same-named .txt transcripts (layout tested, accuracy not measured
here).

    python data_prep/folder.py --root ~/my_recordings --out ~/speechdraw-runs/data/mine.jsonl
    python data_prep/folder.py --root ~/my_recordings --out mine.jsonl --speaker-from-dir

Layout: anywhere under --root, `name.<audio extension>` (wav, flac, mp3, ogg, opus, sph, ...) next to `name.txt`
holding its transcript (any text; normalised with speechdraw.asr.text.normalize). Audio without a transcript, or with
an empty one, is skipped with a count. With --speaker-from-dir the speaker is the name of the audio file's directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import AUDIO_EXTENSIONS, probe, write_split

from speechdraw.asr.manifest import ManifestEntry
from speechdraw.asr.text import normalize


def find_pairs(root: Path) -> tuple[list[tuple[Path, str]], int]:
    """([(audio path, normalised transcript)] sorted by path, number of audio files without a usable transcript)."""
    pairs, missing = [], 0
    for audio in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
        txt = audio.with_suffix(".txt")
        text = normalize(txt.read_text(encoding="utf-8", errors="replace")) if txt.is_file() else ""
        if not text:
            print(f"warning: {audio}: {'empty transcript' if txt.is_file() else 'no ' + txt.name}, skipped",
                  file=sys.stderr)  # fmt: skip
            missing += 1
            continue
        pairs.append((audio, text))
    return pairs, missing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="folder to search, recursively (required)")
    p.add_argument("--out", type=Path, required=True, help="manifest to write, e.g. data.jsonl (required)")
    p.add_argument("--speaker-from-dir", action="store_true",
                   help="use each audio file's directory name as its speaker (default: no speaker)")
    p.add_argument("--jobs", type=int, default=8, help="threads reading audio headers (default: 8)")
    args = p.parse_args(argv)

    pairs, missing = find_pairs(args.root)
    infos = probe([audio for audio, _ in pairs], args.jobs)
    entries = [
        ManifestEntry(audio=str(audio.resolve()), duration=info.duration, text=text,
                      speaker=audio.parent.name if args.speaker_from_dir else None, extra={"id": audio.stem})
        for (audio, text), info in zip(pairs, infos)
        if info is not None
    ]  # fmt: skip
    write_split(args.out, entries, skipped=missing + len(pairs) - len(entries))
    return 0 if entries else 1


if __name__ == "__main__":
    raise SystemExit(main())
