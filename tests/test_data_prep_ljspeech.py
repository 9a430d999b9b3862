"""data_prep/ljspeech.py on a miniature LJSpeech-1.1 (metadata.csv + wavs/ at 22.05 kHz)."""

from __future__ import annotations

import pytest
from asr_fixtures import prep, write_audio

from speechdraw.asr.manifest import read_manifest, validate_manifest

ljspeech = prep("ljspeech")

METADATA = [  # id|raw|normalized, as in the real file (no header, no quoting)
    "LJ001-0001|Printing, in the only sense with which we are at present concerned|Printing, in the only sense "
    "with which we are at present concerned",
    'LJ001-0002|in being comparatively modern.|in being comparatively "modern."',
    "LJ001-0003|For although the Chinese took impressions in 1450|For although the Chinese took impressions in "
    "fourteen fifty",
    "LJ001-0004|produced the block books, which were the immediate predecessors|",  # empty third column
    "LJ001-0005|the invention of movable metal letters in the middle of the 15th century|the invention of movable "
    "metal letters in the middle of the fifteenth century",
    "LJ001-0006|And it is worth mention in passing that, as an example of fine typography,|And it is worth mention "
    "in passing that, as an example of fine typography,",
]


@pytest.fixture
def root(tmp_path):
    corpus = tmp_path / "LJSpeech-1.1"
    corpus.mkdir()
    (corpus / "metadata.csv").write_text("\n".join(METADATA) + "\n")
    for i, line in enumerate(METADATA):
        write_audio(corpus / "wavs" / f"{line.split('|')[0]}.wav", 0.5 + 0.25 * i, 22_050)
    return tmp_path


def test_splits_cover_everything_once(root, tmp_path):
    out = tmp_path / "out"
    assert ljspeech.main(["--root", str(root), "--out", str(out), "--dev-utts", "2", "--test-utts", "1"]) == 0
    splits = {s: read_manifest(out / f"{s}.jsonl") for s in ("train", "dev", "test")}
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [3, 2, 1]
    ids = [e.extra["id"] for entries in splits.values() for e in entries]
    assert sorted(ids) == [f"LJ001-000{i}" for i in range(1, 7)]
    by_id = {e.extra["id"]: e for entries in splits.values() for e in entries}
    assert by_id["LJ001-0002"].text == "in being comparatively modern"  # quote characters are not CSV quoting
    assert by_id["LJ001-0003"].text == "for although the chinese took impressions in fourteen fifty"
    assert by_id["LJ001-0004"].text == "produced the block books which were the immediate predecessors"  # raw column
    assert by_id["LJ001-0006"].duration == pytest.approx(1.75) and by_id["LJ001-0006"].speaker == "LJ"
    for s in splits:
        assert validate_manifest(out / f"{s}.jsonl").ok
    # The draw is a function of the seed.
    assert ljspeech.main(["--root", str(root / "LJSpeech-1.1"), "--out", str(tmp_path / "again"), "--dev-utts", "2",
                          "--test-utts", "1"]) == 0  # fmt: skip
    assert (tmp_path / "again" / "dev.jsonl").read_text() == (out / "dev.jsonl").read_text()
