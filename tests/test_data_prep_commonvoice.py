"""data_prep/commonvoice.py on a miniature Common Voice release: TSVs with a header and MP3 clips."""

from __future__ import annotations

import pytest
import soundfile as sf
from asr_fixtures import prep, write_audio

from speechdraw.asr.manifest import read_manifest, validate_manifest

commonvoice = prep("commonvoice")

HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
          "gender", "accents", "variant", "locale", "segment"]  # fmt: skip
ROWS = {  # split: [(client_id, clip, sentence)]
    "train": [("c1", "common_voice_en_1.mp3", 'He said "hi" to me.'),
              ("c2", "common_voice_en_2.mp3", "It costs $5, doesn't it?"),
              ("c2", "common_voice_en_3.mp3", "東京")],  # normalises to nothing: dropped
    "dev": [("c3", "common_voice_en_4.mp3", "Good morning, Dr. Brown.")],
    "test": [("c4", "common_voice_en_5.mp3", "The end.")],
}  # fmt: skip


def make_release(root, with_durations):
    lang = root / "cv-corpus-17.0-2024-03-15" / "en"
    for split, rows in ROWS.items():
        lines = ["\t".join(HEADER)]
        for i, (client, clip, sentence) in enumerate(rows):
            write_audio(lang / "clips" / clip, 1.0 + 0.5 * i, 48_000, fmt="MP3")
            lines.append("\t".join([client, clip, f"s{i}", sentence, "", "2", "0", "", "", "", "", "en", ""]))
        (lang / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    if with_durations:
        clips = sorted((lang / "clips").iterdir())
        (lang / "clip_durations.tsv").write_text(
            "clip\tduration[ms]\n" + "".join(f"{c.name}\t{round(sf.info(str(c)).duration * 1000)}\n" for c in clips))
    return lang


@pytest.mark.parametrize("with_durations", [True, False])
def test_manifests_from_tsv_and_mp3(tmp_path, with_durations, capsys):
    assert sf.info(str(make_release(tmp_path, with_durations) / "clips" / "common_voice_en_1.mp3")).format == "MP3"
    out = tmp_path / "out"
    assert commonvoice.main(["--root", str(tmp_path / "cv-corpus-17.0-2024-03-15"), "--out", str(out)]) == 0
    train = read_manifest(out / "train.jsonl")
    assert [e.text for e in train] == ["he said hi to me", "it costs five dollars doesn't it"]
    assert [e.speaker for e in train] == ["c1", "c2"] and train[0].extra["id"] == "common_voice_en_1"
    assert train[1].duration == pytest.approx(1.5, abs=0.1)  # MP3 framing pads a little
    assert "train.jsonl: 2 utterances, 0.00 h, 1 skipped" in capsys.readouterr().out
    assert read_manifest(out / "dev.jsonl")[0].text == "good morning doctor brown"
    for split in ROWS:
        assert validate_manifest(out / f"{split}.jsonl").ok


def test_root_may_be_the_parent_or_the_language_dir(tmp_path):
    lang = make_release(tmp_path, with_durations=True)
    assert commonvoice.language_dir(tmp_path, "en") == lang
    assert commonvoice.language_dir(lang, "en") == lang
    with pytest.raises(FileNotFoundError):
        commonvoice.language_dir(tmp_path, "fr")
