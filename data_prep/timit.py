"""Manifests for TIMIT, words and 39 folded phones (layout tested, accuracy not measured here).

    python data_prep/timit.py --root /corpora/TIMIT --out ~/speechdraw-runs/data/timit

TIMIT is licensed by the LDC (LDC93S1) and cannot be downloaded here: point --root at your copy. Layout:
<root>/{TRAIN,TEST}/DR<1-8>/<speaker>/<utterance>.{WAV,PHN,WRD,TXT} (upper or lower case; .WAV files are NIST
SPHERE, which libsndfile reads). .PHN and .WRD lines are "<start sample> <end sample> <label>".

Splits, the standard ones (as in Kaldi's egs/timit): train = all of TRAIN (462 speakers); dev = the 50-speaker
development set drawn from TEST; test = the 24-speaker core test set (192 utterances). The SA1/SA2 dialect sentences,
read by every speaker, are left out unless --keep-sa. Writes, per split, <split>.jsonl (normalised words) and
<split>_phones.jsonl (space-separated phones, the 61 TIMIT labels folded to 39 with
speechdraw.asr.text.TIMIT_61_TO_39; use TokenSet.phonemes() for these).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from _common import probe, write_split

from speechdraw.asr.manifest import ManifestEntry
from speechdraw.asr.text import fold_timit_phones, normalize

CORE_TEST_SPEAKERS = frozenset(
    "mdab0 mwbt0 felc0 mtas1 mwew0 fpas0 mjmp0 mlnt0 fpkt0 mlll0 mtls0 fjlm0 mbpm0 mklt0 fnlp0 mcmj0 mjdh0 fmgd0 "
    "mgrt0 mnjm0 fdhc0 mjln0 mpam0 fmld0".split()
)
DEV_SPEAKERS = frozenset(
    "faks0 fdac1 fjem0 mgwt0 mjar0 mmdb1 mmdm2 mpdf0 fcmh0 fkms0 mbdg0 mbwm0 mcsh0 fadg0 fdms0 fedw0 mgjf0 mglb0 "
    "mrtk0 mtaa0 mtdt0 mthc0 mwjg0 fnmr0 frew0 fsem0 mbns0 mmjr0 mdls0 mdlf0 mdvc0 mers0 fmah0 fdrw0 mrcs0 mrjm4 "
    "fcal1 mmwh0 fjsj0 majc0 mjsw0 mreb0 fgjd0 fjmg0 mroa0 mteb0 mjfc0 mrjr0 fmml0 mrws1".split()
)


@dataclass(frozen=True)
class TimitUtterance:
    audio: Path
    speaker: str  # e.g. FCJF0 (first letter: sex)
    dialect: str  # DR1..DR8
    name: str  # SA1, SI648, SX43, ...
    words: str  # normalised
    phones: list[str]  # folded to 39


def child(directory: Path, name: str) -> Path | None:
    """Case-insensitive lookup: TIMIT copies come as TRAIN/DR1/FCJF0/SA1.WAV or train/dr1/fcjf0/sa1.wav."""
    for p in directory.iterdir():
        if p.name.lower() == name.lower():
            return p
    return None


def _labels(path: Path) -> list[str]:
    return [line.split()[2] for line in path.read_text(encoding="latin-1").splitlines() if len(line.split()) >= 3]


def read_part(root: Path, part: str, keep_sa: bool = False) -> list[TimitUtterance]:
    """All utterances of TRAIN or TEST."""
    part_dir = child(root, part)
    if part_dir is None:
        raise FileNotFoundError(f"no {part} directory under {root}")
    utts = []
    for wav in sorted(p for p in part_dir.glob("*/*/*") if p.suffix.lower() == ".wav"):
        name = wav.stem.upper()
        if name.startswith("SA") and not keep_sa:
            continue
        wrd, phn, txt = (child(wav.parent, wav.stem + ext) for ext in (".wrd", ".phn", ".txt"))
        if wrd is not None:
            words = normalize(" ".join(_labels(wrd)))
        elif txt is not None:  # "<start> <end> The sentence."
            words = normalize(txt.read_text(encoding="latin-1").split(maxsplit=2)[-1])
        else:
            print(f"warning: no .WRD or .TXT for {wav}, skipped", file=sys.stderr)
            continue
        if phn is None:
            print(f"warning: no .PHN for {wav}, skipped", file=sys.stderr)
            continue
        utts.append(TimitUtterance(
            audio=wav.resolve(), speaker=wav.parent.name.upper(), dialect=wav.parent.parent.name.upper(), name=name,
            words=words, phones=fold_timit_phones(p.lower() for p in _labels(phn)),
        ))  # fmt: skip
    return utts


def assign_splits(train: list[TimitUtterance], test: list[TimitUtterance]) -> dict[str, list[TimitUtterance]]:
    return {
        "train": train,
        "dev": [u for u in test if u.speaker.lower() in DEV_SPEAKERS],
        "test": [u for u in test if u.speaker.lower() in CORE_TEST_SPEAKERS],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="the TIMIT directory holding TRAIN/ and TEST/ (required)")
    p.add_argument("--out", type=Path, required=True, help="directory for the manifests (required)")
    p.add_argument("--keep-sa", action="store_true", help="keep the SA1/SA2 dialect sentences (default: off)")
    p.add_argument("--jobs", type=int, default=8, help="threads reading audio headers (default: 8)")
    args = p.parse_args(argv)

    splits = assign_splits(read_part(args.root, "TRAIN", args.keep_sa), read_part(args.root, "TEST", args.keep_sa))
    for split, utts in splits.items():
        infos = probe([u.audio for u in utts], args.jobs)
        kept = [(u, info) for u, info in zip(utts, infos) if info is not None]
        for suffix, text_of in (("", lambda u: u.words), ("_phones", lambda u: " ".join(u.phones))):
            entries = [
                ManifestEntry(audio=str(u.audio), duration=info.duration, text=text_of(u), speaker=u.speaker,
                              extra={"id": f"{u.speaker}_{u.name}", "dialect": u.dialect})
                for u, info in kept
            ]  # fmt: skip
            write_split(args.out / f"{split}{suffix}.jsonl", entries, skipped=len(utts) - len(kept))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
