"""The installed entry points answer --help and --version; every command reports a bad --model (missing, or a
release of another kind) in one line with exit status 2, in a real subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import run_script

from speechdraw import __version__


def test_version_and_help():
    out = subprocess.run([sys.executable, "-m", "speechdraw", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"speechdraw {__version__}"
    out = subprocess.run([sys.executable, "-m", "speechdraw", "--help"], capture_output=True, text=True, check=True)
    assert "usage: speechdraw" in out.stdout


def test_building_every_subcommand_parser_does_not_import_torch():
    code = ("import sys; from speechdraw import cli; p = cli.build_parser(); "
            "names = [n for n, *_ in cli.SUBCOMMANDS]; assert {'transcribe', 'sample'} <= set(names), names; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------- a bad --model, any command


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """A (random-weights) release of each kind, and an audio file to transcribe."""
    from dataclasses import asdict

    import numpy as np
    import soundfile as sf
    from draw_fixtures import tiny_config

    from speechdraw.asr.features import FeatureConfig
    from speechdraw.asr.model import AcousticModel, AcousticModelConfig
    from speechdraw.asr.release import save_speech_release
    from speechdraw.asr.text import TokenSet
    from speechdraw.draw.model import Draw
    from speechdraw.engine.release import save_release

    d = tmp_path_factory.mktemp("releases")
    cfg = tiny_config()
    draw = save_release(d / "draw", Draw(cfg).state_dict(), asdict(cfg), kind="draw")
    tokens = TokenSet.characters()
    mc = AcousticModelConfig(n_mels=8, hidden=4, layers=1, vocab_size=len(tokens) + 1)
    speech = save_speech_release(d / "speech", AcousticModel(mc).state_dict(), mc,
                                 FeatureConfig(n_mels=8, cmvn="none"), None, tokens)
    sf.write(str(d / "a.wav"), np.zeros(16_000, np.float32), 16_000)
    return {"draw": draw, "speech": speech, "audio": d / "a.wav", "missing": d / "no-such-release"}


@pytest.mark.parametrize("command,wrong", [("transcribe", "missing"), ("transcribe", "draw"),
                                           ("sample", "missing"), ("sample", "speech")])
def test_bad_model_is_one_line_and_exit_2(releases, tmp_path, command, wrong):
    args = [str(releases["audio"])] if command == "transcribe" else ["--out", str(tmp_path / "out")]
    proc = run_script(["-m", "speechdraw", command, *args, "--model", str(releases[wrong])], check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"speechdraw {command}: error: {releases[wrong]}"), lines[0]
    assert ("no such model" if wrong == "missing" else "model, but a") in lines[0], lines[0]


# ------------------------------------------------------------------------------ transcribe's inputs and outputs


def test_output_names_never_clash(tmp_path):
    """x.wav, x.mp3 and x.wav.flac in one directory (x.wav.flac's stem is x.wav): every input gets its own output
    name, extensions kept only where needed; inputs in different directories keep their tree."""
    from speechdraw.asr.transcribe_cmd import collect_inputs, output_stems

    names = ["d/x.wav", "d/x.mp3", "d/x.wav.flac", "d/y.wav", "e/x.wav", "e/z.flac", "e/z.flac.wav", "e/z.flac.ogg"]
    for n in names:
        (tmp_path / n).parent.mkdir(exist_ok=True)
        (tmp_path / n).write_bytes(b"")
    paths = collect_inputs([str(tmp_path)])
    stems = {str(p.relative_to(tmp_path)): str(s) for p, s in zip(paths, output_stems(paths))}
    assert stems == {"d/x.wav": "d/x.wav", "d/x.mp3": "d/x.mp3", "d/x.wav.flac": "d/x.wav.flac", "d/y.wav": "d/y",
                     "e/x.wav": "e/x", "e/z.flac": "e/z", "e/z.flac.wav": "e/z.flac.wav",
                     "e/z.flac.ogg": "e/z.flac.ogg"}
    assert len(set(stems.values())) == len(names)


def test_directory_search_finds_what_libsndfile_reads(tmp_path):
    """Every extension a directory search picks up is a format this libsndfile decodes (no WavPack .wv): a file
    written under each name is found and its header read."""
    import numpy as np
    import soundfile as sf

    from speechdraw.asr.audio import audio_info
    from speechdraw.asr.transcribe_cmd import AUDIO_FORMATS, collect_inputs

    assert set(AUDIO_FORMATS.values()) <= set(sf.available_formats())
    assert ".wv" not in AUDIO_FORMATS
    subtypes = {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III", "FLAC": "PCM_16"}
    x = np.zeros(16_000, np.float32)
    for ext, fmt in AUDIO_FORMATS.items():
        sf.write(str(tmp_path / f"a{ext}"), x, 16_000, format=fmt, subtype=subtypes.get(fmt, "PCM_16"))
    (tmp_path / "a.wv").write_bytes(b"wvpk" + bytes(60))  # WavPack: not searched for
    found = collect_inputs([str(tmp_path)])
    assert sorted(p.suffix for p in found) == sorted(AUDIO_FORMATS)
    assert all(abs(audio_info(p).duration - 1.0) < 0.1 for p in found)
