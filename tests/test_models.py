"""Models by name (speechdraw/models.py, `speechdraw models`): pulls from a real HTTP server on 127.0.0.1 (good, bad
checksum, truncated, interrupted and resumed), archives with path-traversal, absolute and link members refused, a
model of the wrong kind refused, names resolved $SPEECHDRAW_MODELS before the cache before the shipped archives, and
`transcribe` / `sample` with no --model using the default names. Every failure leaves the installed models as they
were."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_script
from draw_fixtures import tiny_config

from speechdraw import models
from speechdraw.models import ModelError

# ----------------------------------------------------------------------------------------------------- fixtures


def save_draw(out: Path, seed: int = 0, marker: str = "") -> Path:
    import torch

    from speechdraw.draw.model import Draw
    from speechdraw.engine.release import save_release

    torch.manual_seed(seed)
    cfg = tiny_config()
    return save_release(out, Draw(cfg).state_dict(), asdict(cfg), kind="draw", metrics={"marker": marker})


def save_speech(out: Path, seed: int = 0) -> Path:
    import torch

    from speechdraw.asr.features import FeatureConfig
    from speechdraw.asr.model import AcousticModel, AcousticModelConfig
    from speechdraw.asr.release import save_speech_release
    from speechdraw.asr.text import TokenSet

    torch.manual_seed(seed)
    tokens = TokenSet.characters()
    mc = AcousticModelConfig(n_mels=8, hidden=8, layers=1, vocab_size=len(tokens) + 1)
    return save_speech_release(out, AcousticModel(mc).state_dict(), mc, FeatureConfig(n_mels=8, cmvn="none"), None,
                               tokens)


def card(name: str) -> dict:
    return {"name": name, "kind": "draw", "description": "test", "trained_on": "nothing", "results": []}


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """Release archives of a tiny DRAW model (name "digits") and a tiny speech model (name "speech")."""
    d = tmp_path_factory.mktemp("archives")
    draw = models.write_archive(save_draw(d / "draw-release", marker="archive"), d / "digits.tar.gz", card("digits"))
    speech = models.write_archive(save_speech(d / "speech-release"), d / "speech.tar.gz",
                                  {**card("speech"), "kind": "asr"})
    return {"dir": d, "draw": draw, "speech": speech}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty user cache, no $SPEECHDRAW_MODELS, and a registry of our own (written by the test)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SPEECHDRAW_MODELS", raising=False)
    registry = tmp_path / "registry" / "registry.json"
    registry.parent.mkdir()
    monkeypatch.setenv("SPEECHDRAW_REGISTRY", str(registry))
    write_registry(registry, [])
    return registry


def write_registry(path: Path, entries: list[dict], defaults: dict | None = None) -> None:
    path.write_text(json.dumps({"format_version": 1, "defaults": defaults or {}, "models": entries}))


def installed() -> list[str]:
    """What the cache holds, hidden working files included (a failed pull must leave nothing behind)."""
    cache = models.cache_dir()
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p != cache / ".downloads")


class Server:
    """http.server on 127.0.0.1 in a thread: serves `files` (path -> bytes), honours Range (206) unless
    `ranges` is False, cuts the first answer for a path in `cut` after half its body, and records requests."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.ranges = True
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                body = server.files.get(self.path)
                server.requests.append({"path": self.path, "range": self.headers.get("Range")})
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and server.ranges:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("ETag", '"v1"')
                self.end_headers()
                if self.path in server.cut:
                    server.cut.discard(self.path)
                    self.wfile.write(body[start:start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])
                server.requests[-1]["sent"] = len(body) - start

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def serve(server: Server, archive: Path, registry: Path, name: str, kind: str = "draw", **override) -> dict:
    data = archive.read_bytes()
    server.files[f"/{archive.name}"] = data
    entry = {"name": name, "kind": kind, "url": f"{server.url}/{archive.name}",
             "sha256": models.file_sha256(archive), "size": len(data), **override}
    write_registry(registry, [entry])
    return entry


# ----------------------------------------------------------------------------------------------------- pulling


def test_good_pull_by_name_installs_atomically_and_loads(store, server, archives):
    serve(server, archives["dir"] / "digits.tar.gz", store, "digits")
    out = models.pull("digits", progress=False, timeout=5)
    assert out == models.cache_dir() / "digits"
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "card.json", "README.md",
                                               ".source.json"}
    source = json.loads((out / ".source.json").read_text())
    assert source["sha256"] == archives["draw"].sha256 and source["source"].endswith("/digits.tar.gz")
    assert installed() == ["digits"] + [f"digits/{n}" for n in sorted(p.name for p in out.iterdir())]
    model = models.load_model("digits", kind="draw")
    assert type(model).__name__ == "Draw" and not model.training
    assert models.resolve_model("digits", kind="draw") == out  # installed now: no second download
    assert len(server.requests) == 1


def test_checksum_mismatch_is_one_line_and_installs_nothing(store, server, archives):
    serve(server, archives["dir"] / "digits.tar.gz", store, "digits", sha256="0" * 64)
    with pytest.raises(ModelError, match=r"sha256 [0-9a-f]{64} does not match the expected 0{64}") as e:
        models.pull("digits", progress=False, timeout=5)
    assert "\n" not in str(e.value)
    assert installed() == []  # nor a partial download


def test_truncated_download_and_truncated_archive(store, server, archives):
    archive = archives["dir"] / "digits.tar.gz"
    entry = serve(server, archive, store, "digits")
    server.files[f"/{archive.name}"] = archive.read_bytes()[:-300]  # the server itself holds a cut-off file
    with pytest.raises(ModelError, match=r"bytes, but the registry says \d+: truncated"):
        models.pull("digits", progress=False, timeout=5)
    assert installed() == []
    # The same cut-off file from a URL nobody gave a checksum for: tarfile finds the archive truncated.
    with pytest.raises(ModelError, match="truncated or corrupt archive"):
        models.pull(entry["url"], progress=False, timeout=5)
    assert installed() == []


def test_interrupted_pull_resumes_where_it_stopped(store, server, archives):
    archive = archives["dir"] / "digits.tar.gz"
    entry = serve(server, archive, store, "digits")
    size = entry["size"]
    server.cut.add(f"/{archive.name}")  # the first answer stops after half the body and closes the connection
    with pytest.raises(ModelError, match="download failed after 1 tries .*next pull resumes it"):
        models.pull("digits", progress=False, timeout=5, retries=0)
    parts = list((models.cache_dir() / ".downloads").glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == size // 2
    assert not (models.cache_dir() / "digits").exists()
    out = models.pull("digits", progress=False, timeout=5, retries=0)
    assert server.requests[-1]["range"] == f"bytes={size // 2}-"
    assert server.requests[-1]["sent"] == size - size // 2  # only the rest was fetched
    assert json.loads((out / ".source.json").read_text())["sha256"] == entry["sha256"]
    assert not list((models.cache_dir() / ".downloads").glob("*.part"))
    # Within one pull, retries resume by themselves; a server without Range support restarts from zero.
    models.remove("digits")
    server.cut.add(f"/{archive.name}")
    server.ranges = False
    models.pull("digits", progress=False, timeout=5, retries=2, backoff=0.01)
    assert [r["range"] for r in server.requests[-2:]] == [None, f"bytes={size // 2}-"]
    assert server.requests[-1]["sent"] == size


def test_archive_members_that_escape_or_link_are_refused(store, tmp_path):
    def evil(name: str, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
        path = tmp_path / f"{name}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo("m/config.json")
            cfg = json.dumps({"kind": "draw"}).encode()
            info.size = len(cfg)
            tar.addfile(info, io.BytesIO(cfg))
            member.size = len(data) if member.isfile() else 0
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
        return path

    link = tarfile.TarInfo("m/model.pt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("m/model.pt")
    hard.type, hard.linkname = tarfile.LNKTYPE, "m/config.json"
    dev = tarfile.TarInfo("m/dev")
    dev.type = tarfile.CHRTYPE
    cases = {"traversal": (tarfile.TarInfo("m/../../escaped.txt"), "points outside the archive"),
             "absolute": (tarfile.TarInfo(str(tmp_path / "abs.txt")), "absolute path"),
             "symlink": (link, "is a link"), "hardlink": (hard, "is a link"), "device": (dev, "device")}
    for name, (member, message) in cases.items():
        with pytest.raises(ModelError, match=message):
            models.pull(str(evil(name, member)), progress=False)
    assert installed() == []
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "abs.txt").exists()
    assert not (models.cache_dir().parent / "escaped.txt").exists()


def test_unknown_name_and_wrong_kind(store, server, archives):
    with pytest.raises(ModelError, match=r"nosuch: no such model name.*known names: none yet"):
        models.resolve_model("nosuch", kind="asr")
    proc = run_script(["-m", "speechdraw", "models", "pull", "nosuch"], check=False, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("speechdraw models: error: nosuch: no such model name")
    # A speech archive pulled where a DRAW model is needed (its URL, then a registry entry that lies about its kind).
    serve(server, archives["dir"] / "speech.tar.gz", store, "speech", kind="draw")
    with pytest.raises(ModelError, match=r"this is a speech model \('asr'\), but a DRAW model \('draw'\) was expected"):
        models.pull("speech", progress=False, timeout=5)
    with pytest.raises(ModelError, match="but a DRAW model"):
        models.resolve_model(f"{server.url}/speech.tar.gz", kind="draw")
    assert installed() == []
    with pytest.raises(ModelError, match=r"this is a DRAW model \('draw'\), but a speech model \('asr'\) is needed"):
        models.resolve_model("speech", kind="asr")  # the registry's kind is checked before any download


# ----------------------------------------------------------------------------------------------------- resolving


def test_resolution_order_env_then_cache_then_shipped(store, archives, tmp_path, monkeypatch):
    import shutil

    shutil.copy(archives["dir"] / "digits.tar.gz", store.parent / "digits.tar.gz")
    write_registry(store, [{"name": "digits", "kind": "draw", "shipped": "digits.tar.gz",
                            "sha256": archives["draw"].sha256, "size": archives["draw"].size}])
    env = tmp_path / "mine"
    monkeypatch.setenv("SPEECHDRAW_MODELS", str(env))
    save_draw(env / "digits", marker="env")
    cached = models.cache_dir() / "digits"
    save_draw(cached, marker="cache")

    def marker() -> str:
        return json.loads((models.resolve_model("digits", kind="draw") / "config.json").read_text())["metrics"][
            "marker"]

    assert marker() == "env"
    assert [(r.name, r.where) for r in models.list_models()] == [("digits", "env")]
    shutil.rmtree(env / "digits")
    assert marker() == "cache"
    models.remove("digits")
    assert not cached.exists()
    assert [(r.name, r.where) for r in models.list_models()] == [("digits", "shipped")]
    assert marker() == "archive"  # the shipped archive, unpacked into the cache on first use
    assert (cached / ".source.json").is_file()
    # A directory, an archive file and a file:// URL work as --model too.
    assert models.resolve_model(str(env), kind="draw") == env
    assert models.resolve_model(str(store.parent / "digits.tar.gz"), kind="draw") == cached
    assert models.resolve_model((store.parent / "digits.tar.gz").as_uri(), kind="draw") == cached


def test_cli_list_info_path_remove(store, archives):
    import shutil

    shutil.copy(archives["dir"] / "digits.tar.gz", store.parent / "digits.tar.gz")
    write_registry(store, [{"name": "digits", "kind": "draw", "shipped": "digits.tar.gz", "headline": "bound 1.0",
                            "sha256": archives["draw"].sha256, "size": archives["draw"].size}])
    out = run_script(["-m", "speechdraw", "models", "list"], timeout=60).stdout.splitlines()
    assert out[0].split() == ["name", "kind", "size", "installed", "headline"]
    assert out[1].split()[:3] == ["digits", "draw", f"{archives['draw'].size / 1e6:.1f}"] and "shipped" in out[1]
    assert out[1].endswith("bound 1.0")
    path = run_script(["-m", "speechdraw", "models", "path", "digits"], timeout=60).stdout.strip()
    assert Path(path) == models.cache_dir() / "digits"
    info = json.loads(run_script(["-m", "speechdraw", "models", "info", "digits", "--json"], timeout=60).stdout)
    assert info["installed"] == path and info["description"] == "test" and info["headline"] == "bound 1.0"
    assert "installed (cache)" in run_script(["-m", "speechdraw", "models", "list"], timeout=60).stdout
    run_script(["-m", "speechdraw", "models", "remove", "digits"], timeout=60)
    assert not Path(path).exists()


def test_transcribe_and_sample_use_the_default_names(store, tmp_path, monkeypatch):
    env = tmp_path / "mine"
    monkeypatch.setenv("SPEECHDRAW_MODELS", str(env))
    write_registry(store, [], defaults={"asr": "asr-en-synth", "draw": "draw-mnist"})
    audio = tmp_path / "a.wav"
    sf.write(str(audio), (0.1 * np.sin(np.arange(16_000) / 5)).astype(np.float32), 16_000)
    for command, args in (("transcribe", [str(audio)]), ("sample", ["--out", str(tmp_path / "pics"), "--num", "4"])):
        proc = run_script(["-m", "speechdraw", command, *args], check=False, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "no --model given and the default" in proc.stderr and "speechdraw models pull" in proc.stderr
    save_speech(env / "asr-en-synth")
    save_draw(env / "draw-mnist")
    proc = run_script(["-m", "speechdraw", "transcribe", str(audio), "--format", "json", "--quiet"], timeout=120)
    assert json.loads(proc.stdout)["path"] == str(audio)
    run_script(["-m", "speechdraw", "sample", "--out", str(tmp_path / "pics"), "--num", "4"], timeout=120)
    assert (tmp_path / "pics" / "samples.png").is_file()
    # Transcriber.from_pretrained resolves the same way, and refuses a DRAW model by name.
    from speechdraw import Transcriber

    assert Transcriber.from_pretrained(device="cpu").asr.dir == env / "asr-en-synth"
    with pytest.raises(ModelError, match="but a speech model"):
        Transcriber.from_pretrained("draw-mnist")
