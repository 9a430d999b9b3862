"""`speechdraw serve` over real HTTP on 127.0.0.1: a real espeak-ng recording uploaded gives the transcript (valid
against transcript.schema.json, the same text as the library gives), SRT and VTT; oversized uploads get 413 before
their body is read, non-audio 415, both with a message naming the file; the DRAW endpoint returns a real GIF with one
frame per glimpse and real PNGs; concurrent requests all succeed; the command runs as a real process and leaves its
temporary directory empty. Models: random weights (seeded), built on the spot: this tests the plumbing."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, subprocess_env
from PIL import Image

SENTENCE = "hello world, this is a test of the web page"
LIMIT = 200_000  # bytes: --max-upload-mb of the test server


def build_releases(d: Path) -> dict[str, Path]:
    """A seeded random-weights speech release (its greedy output on the test sentence is a few 'words') and DRAW
    release, and an espeak-ng recording of SENTENCE."""
    import torch
    from draw_fixtures import tiny_config

    from speechdraw.asr.features import FeatureConfig
    from speechdraw.asr.model import AcousticModel, AcousticModelConfig
    from speechdraw.asr.release import save_speech_release
    from speechdraw.asr.text import TokenSet
    from speechdraw.draw.model import Draw
    from speechdraw.engine.release import save_release

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make install adds it)")
    torch.manual_seed(2)
    tokens = TokenSet.characters()
    mc = AcousticModelConfig(n_mels=8, hidden=4, layers=1, vocab_size=len(tokens) + 1)
    speech = save_speech_release(d / "speech", AcousticModel(mc).state_dict(), mc,
                                 FeatureConfig(n_mels=8, cmvn="none"), None, tokens)
    cfg = tiny_config()
    draw = save_release(d / "draw", Draw(cfg).state_dict(), asdict(cfg), kind="draw")
    wav = d / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), SENTENCE], check=True, capture_output=True)
    return {"speech": speech, "draw": draw, "wav": wav, "steps": cfg.steps}


def start_server(speech: Path, draw: Path, limit: int = LIMIT):
    """A real server on 127.0.0.1 (any free port), serving from a thread; call .close() to stop it."""
    from speechdraw.serve import App, make_server

    app = App.load(str(speech), str(draw), device="cpu", max_upload_bytes=limit, required=("asr", "draw"))
    server = make_server(app, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_releases(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(files):
    server = start_server(files["speech"], files["draw"])
    yield server
    server.close()


def post(url: str, body: bytes, content_type: str = "application/octet-stream") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, dict]:
    """Send exactly `head` (request line and headers) and `body` on a socket; read the answer. For requests urllib
    will not make: a Content-Length that promises more than is sent, or none at all."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                length = int(next(line.split(b":")[1] for line in data[:head_end].split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                if len(data) >= head_end + 4 + length:
                    break
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data[head_end + 4:head_end + 4 + length])


def transcribe(server, path: Path, name: str) -> tuple[int, dict]:
    return post(server.url + "api/transcribe?name=" + urllib.request.quote(name), path.read_bytes())


def test_upload_gives_schema_valid_transcript_subtitles_and_word_timings(server, files):
    import jsonschema

    from speechdraw.asr.transcribe import Transcriber
    from speechdraw.asr.writers import SCHEMA_PATH

    status, out = transcribe(server, files["wav"], "hello.wav")
    assert status == 200, out
    t = out["transcript"]
    jsonschema.validate(t, json.loads(SCHEMA_PATH.read_text()))
    expected = Transcriber(files["speech"], device="cpu").transcribe(files["wav"])  # the library, directly
    assert t["text"] == expected.text and len(t["text"].split()) >= 2, (t["text"], expected.text)
    assert [w["word"] for w in t["words"]] == [w.word for w in expected.words]
    assert t["path"] == "hello.wav" and t["model"] == "speech" and t["decoder"] == "greedy"
    assert abs(t["duration"] - expected.duration) < 1e-6 and 2.0 < t["duration"] < 6.0
    for w in t["words"]:
        assert 0 <= w["start"] <= w["end"] <= t["duration"] and 0 <= w["confidence"] <= 1
    assert out["srt"].startswith("1\n00:00:") and " --> " in out["srt"]
    assert out["vtt"].startswith("WEBVTT\n\n00:00:") and " --> " in out["vtt"]
    assert out["txt"] == t["text"] + "\n"
    assert out["tsv"].splitlines()[0] == "start\tend\tword\tconfidence" and len(out["tsv"].splitlines()) == len(
        t["words"]) + 1
    # A name that tries to climb out of the upload directory is only a name: its base name is shown, nothing else.
    status, out = transcribe(server, files["wav"], "../../../tmp/evil.wav")
    assert status == 200 and out["transcript"]["path"] == "evil.wav"
    assert list(server.app.tmp_root.iterdir()) == []  # every request's files are gone


def test_oversized_upload_is_refused_from_content_length_before_reading(server, files):
    big = files["wav"].read_bytes() * (LIMIT // files["wav"].stat().st_size + 1)  # real audio, just too long
    assert len(big) > LIMIT
    status, out = post(server.url + "api/transcribe?name=long.wav", big)
    assert status == 413, out
    assert out["error"] == f"long.wav: too large ({len(big) / 2**20:.2f} MB; this server takes at most 0.19 MB)"
    # 10 GB promised, 5 bytes sent: the answer comes at once, so the server did not wait for the body.
    head = (f"POST /api/transcribe?name=huge.wav HTTP/1.1\r\nHost: x\r\nContent-Length: {10 << 30}\r\n"
            "Content-Type: application/octet-stream\r\n")
    status, out = raw_request(server.url, head, b"RIFF!")
    assert status == 413 and out["error"].startswith("huge.wav: too large (10240.00 MB"), out
    status, out = raw_request(server.url, "POST /api/transcribe?name=a.wav HTTP/1.1\r\nHost: x\r\n")
    assert status == 411 and "Content-Length" in out["error"], out
    # The limit counts bytes: exactly LIMIT is taken (and, not being audio, refused for that reason only).
    status, out = post(server.url + "api/transcribe?name=edge.bin", b"\x01" * LIMIT)
    assert status == 415, out


def test_non_audio_uploads_get_415_with_the_file_named(server, tmp_path):
    (tmp_path / "notes.txt").write_text("these are notes, not sound\n" * 20)
    (tmp_path / "fake.wav").write_bytes(os.urandom(5000))
    Image.new("RGB", (8, 8)).save(tmp_path / "picture.png")
    for name in ("notes.txt", "fake.wav", "picture.png"):
        status, out = transcribe(server, tmp_path / name, name)
        assert status == 415, (name, out)
        assert out["error"].startswith(f"{name}: not audio this server can decode: "), out
        assert str(server.app.tmp_root) not in out["error"]  # the server's paths stay private
    status, out = post(server.url + "api/transcribe?name=empty.wav", b"")
    assert status == 400 and out["error"] == "empty.wav: empty upload (0 bytes)", out
    with urllib.request.urlopen(server.url + "api/info") as r:  # still serving
        assert json.loads(r.read())["asr"]["error"] is None


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_draw_returns_a_gif_of_the_glimpses_and_a_png_per_glimpse(server, files):
    status, out = post(server.url + "api/draw", json.dumps({"num": 4, "seed": 3}).encode(), "application/json")
    assert status == 200, out
    steps = files["steps"]
    gif = decode(out["gif"])
    assert gif.format == "GIF" and gif.n_frames == steps == out["steps"]
    assert len(out["frames"]) == steps
    pngs = [decode(f) for f in out["frames"]]
    assert all(p.format == "PNG" and p.size == gif.size for p in pngs)
    assert len({p.tobytes() for p in pngs}) == steps  # the canvas changes at every glimpse
    red = np.all(np.asarray(pngs[-1].convert("RGB")) == (255, 40, 40), axis=-1).sum()  # render.WRITE_COLOR
    assert red > 0, "no write window drawn on the frames"
    grid = decode(out["grid"])
    assert grid.format == "PNG" and grid.size == (2 + 2 * (12 * 3 + 2), 2 + 2 * (12 * 3 + 2))  # 4 tiles, 2 x 2
    again = post(server.url + "api/draw", json.dumps({"num": 4, "seed": 3}).encode())[1]
    other = post(server.url + "api/draw", json.dumps({"num": 4, "seed": 4}).encode())[1]
    assert again["frames"] == out["frames"] and other["frames"] != out["frames"]
    for request, message in (({"num": 0}, "num must be between 1 and 64, got 0"),
                             ({"seed": "x"}, "seed must be a whole number, got 'x'"),
                             ({"label": 3}, "this model is not class-conditional")):
        status, out = post(server.url + "api/draw", json.dumps(request).encode())
        assert status == 400 and out["error"].startswith(message), out
    status, out = post(server.url + "api/draw", b"{not json")
    assert status == 400 and out["error"] == "the request body is not JSON"


def test_concurrent_requests_all_succeed_with_the_same_answers(server, files):
    jobs = [lambda: transcribe(server, files["wav"], "hello.wav"),
            lambda: post(server.url + "api/draw", json.dumps({"num": 2, "seed": 1}).encode())] * 4
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: job(), jobs))
    assert all(status == 200 for status, _ in results), [out.get("error") for _, out in results]
    texts = {json.dumps(out["transcript"]) for _, out in results[0::2]}
    gifs = {out["gif"] for _, out in results[1::2]}
    assert len(texts) == 1 and len(gifs) == 1


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_command_serves_until_interrupted_and_cleans_up(files, tmp_path, stop):
    """Ctrl-C in a terminal, or SIGTERM (kill, systemd, docker stop): the server exits 0 and removes its temp dir.
    The child gets a terminal's default SIGINT (a shell running the suite in the background hands its children
    SIGINT ignored, and Python then never raises KeyboardInterrupt)."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = subprocess_env(TMPDIR=str(tmp))
    proc = subprocess.Popen([sys.executable, "-m", "speechdraw", "serve", "--model", str(files["speech"]),
                             "--draw-model", str(files["draw"]), "--port", "0", "--quiet", "--device", "cpu",
                             "--max-upload-mb", "0.5"],
                            cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stderr.readline()
        assert line.startswith("speechdraw serve: http://127.0.0.1:"), line
        url = line.split()[2]
        with urllib.request.urlopen(url, timeout=30) as r:
            page = r.read().decode()
            assert r.headers["Content-Type"] == "text/html; charset=utf-8"
            assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert "<title>speechdraw</title>" in page and "://" not in page  # nothing fetched from elsewhere
        with urllib.request.urlopen(url + "api/info", timeout=30) as r:
            info = json.loads(r.read())
        assert info["max_upload_bytes"] == 524288 and info["draw"]["steps"] == files["steps"]
        status, out = post(url + "api/transcribe?name=hello.wav", files["wav"].read_bytes())
        assert status == 200 and out["transcript"]["text"]
        server_tmp = [p for p in tmp.iterdir() if p.name.startswith("speechdraw-serve-")]
        assert len(server_tmp) == 1 and list(server_tmp[0].iterdir()) == []
    finally:
        proc.send_signal(stop)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave a server behind
            raise
    assert rc == 0, proc.stderr.read()
    assert [p for p in tmp.iterdir() if p.name.startswith("speechdraw-serve-")] == []  # removed on exit


def test_bad_model_or_port_is_one_line_and_exit_2(files, tmp_path, capsys):
    """In-process (the models load as in the real command; a real process is the test above)."""
    from speechdraw.cli import main

    for args, expected in (
            (["--model", str(tmp_path / "missing")], f"speechdraw serve: error: {tmp_path / 'missing'}: no such model"),
            (["--model", str(files["draw"])], f"speechdraw serve: error: {files['draw']}"),
            (["--model", str(files["speech"]), "--draw-model", str(files["speech"])],
             f"speechdraw serve: error: {files['speech']}"),
            (["--port", "70000"], "speechdraw serve: error: --port 70000 is not a port number"),
            (["--max-upload-mb", "0"], "speechdraw serve: error: --max-upload-mb must be > 0")):
        assert main(["serve", "--device", "cpu", *args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), lines
