"""`speechdraw serve`: one web page on 127.0.0.1 to try both models: upload (or record) audio and get the transcript,
SRT/VTT subtitles and word timings; draw digits with DRAW and watch the glimpses.

    server = make_server(App.load(asr="runs/asr-tiny/release", draw="runs/draw/release"), port=8000)
    server.serve_forever()                      # `speechdraw serve` does this; server.close() stops and cleans up

The standard library's ThreadingHTTPServer is enough here (a page, a JSON endpoint per model, uploads of one file as
the request body), so the extra costs no dependency. Routes:

    GET  /                 the page (speechdraw/web/index.html: HTML, CSS and JS in one file, nothing from the internet)
    GET  /api/info         which models are loaded (or why not), the upload limit, the DRAW model's steps and classes
    POST /api/transcribe?name=FILE    body: the audio file's bytes -> {"transcript": <transcript.schema.json document>,
                                      "txt", "srt", "vtt", "tsv": the writers' outputs}
    POST /api/draw         body: {"num": 16, "seed": 0, "label": null} -> {"gif": base64 GIF of the glimpses (write
                           windows in red), "frames": [base64 PNG per glimpse], "grid": base64 PNG of the final images}

Errors are JSON {"error": "one line naming the file and the reason"} with the status: 400 bad request, 411 no
Content-Length, 413 upload over --max-upload-mb (decided from Content-Length before reading the body, and counted
again while reading), 415 not audio (the file's header does not decode), 503 a model that is not loaded.

Uploads go to a per-request directory inside one temporary directory the server makes at start (nothing is written
anywhere else); each is removed when its request ends and the whole directory on close(). Each model sits behind its
own lock: requests run in threads, but a model decodes one request at a time.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

PAGE = Path(__file__).with_name("web") / "index.html"
CHUNK = 1 << 16
MAX_JSON_BODY = 4096  # bytes: /api/draw's request is a few numbers
MAX_DRAW_NUM = 64
DRAIN_BYTES = 32 << 20  # after refusing an upload, read and discard at most this much of it (see _drain)
SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,10}$")


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line message for the page."""

    def __init__(self, status: HTTPStatus, message: str, unread: int = 0):
        super().__init__(message)
        self.status = status
        self.message = message
        self.unread = unread  # bytes of the body left unread: discarded after the answer (Handler._drain)


@dataclass
class Loaded:
    """A model the server holds, or why it holds none (then its endpoint answers 503 with `error`)."""

    name: str = ""  # what the page shows: the release's card name or directory
    model: object | None = None  # a Transcriber, or a Draw model
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


class App:
    """The models, the limits and the temporary directory; the handler calls transcribe() and draw()."""

    def __init__(self, asr: Loaded, draw: Loaded, max_upload_bytes: int = 100 << 20):
        if max_upload_bytes < 1:
            raise ValueError("max_upload_bytes must be >= 1")
        self.asr, self.draw_model = asr, draw
        self.max_upload_bytes = max_upload_bytes
        self.tmp_root = Path(tempfile.mkdtemp(prefix="speechdraw-serve-"))
        self.page = PAGE.read_bytes()

    @classmethod
    def load(cls, asr: str | None = None, draw: str | None = None, *, device: str = "auto",
             max_upload_bytes: int = 100 << 20, required: tuple[str, ...] = ()) -> App:
        """Resolve and load both models (names, directories, archives or URLs; None: the default of each kind,
        speechdraw.models.resolve_model). A model that cannot be loaded is kept as its error, so the page can say
        why, unless its kind ("asr", "draw") is in `required`: then the error is raised."""
        from speechdraw.asr.transcribe import Transcriber, model_name
        from speechdraw.draw.sample import load_draw
        from speechdraw.engine.release import ReleaseError
        from speechdraw.models import resolve_model

        def attempt(kind: str, spec: str | None, load) -> Loaded:
            try:
                return load(resolve_model(spec, kind=kind, progress=False))
            except (ReleaseError, OSError, ValueError) as e:
                if kind in required:
                    raise
                return Loaded(error=str(e))

        def load_asr(path) -> Loaded:
            tr = Transcriber(path, device=device)
            return Loaded(model_name(tr.asr), tr)

        def load_drawing(path) -> Loaded:
            from speechdraw.asr.transcribe import resolve_device

            model, release = load_draw(path, resolve_device(device))
            name = release.dir.name if release.dir.name != "release" else f"{release.dir.parent.name}/release"
            return Loaded(name, model)

        return cls(attempt("asr", asr, load_asr), attempt("draw", draw, load_drawing), max_upload_bytes)

    def info(self) -> dict:
        cfg = self.draw_model.model.cfg if self.draw_model.model is not None else None
        return {"asr": {"model": self.asr.name, "error": self.asr.error},
                "draw": {"model": self.draw_model.name, "error": self.draw_model.error,
                         "steps": cfg.steps if cfg else None, "num_classes": cfg.num_classes if cfg else None,
                         "max_num": MAX_DRAW_NUM},
                "max_upload_bytes": self.max_upload_bytes}

    def transcribe(self, audio: Path, name: str) -> dict:
        """An uploaded file -> the transcript in every format. Not audio (the header does not decode): 415."""
        from speechdraw.asr.audio import AudioError, audio_info
        from speechdraw.asr.writers import WRITERS, transcript_json

        if self.asr.model is None:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, f"no speech model loaded: {self.asr.error}")
        try:
            audio_info(audio)
        except AudioError as e:
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                               f"{name}: not audio this server can decode: "
                               f"{e.reason.replace(str(audio), name)}") from None
        with self.asr.lock:
            t = self.asr.model.transcribe(audio)
        if t.error is not None:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{name}: {t.error.replace(str(audio), name)}")
        t = replace(t, path=name)  # the user's file name, not the temporary file's
        out = {fmt: WRITERS[fmt](t) for fmt in ("txt", "srt", "vtt", "tsv")}
        return {"transcript": transcript_json(t), **out}

    def draw(self, request: dict, out_dir: Path) -> dict:
        """{"num", "seed", "label"} -> the GIF of the glimpses, one PNG per glimpse and the final grid, base64."""
        from speechdraw.draw.sample import sample

        if self.draw_model.model is None:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, f"no DRAW model loaded: {self.draw_model.error}")
        num, seed, label = request.get("num", 16), request.get("seed", 0), request.get("label")
        for key, value in (("num", num), ("seed", seed), ("label", label)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{key} must be a whole number, got {value!r}")
        if not 1 <= num <= MAX_DRAW_NUM:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"num must be between 1 and {MAX_DRAW_NUM}, got {num}")
        t0 = time.perf_counter()
        with self.draw_model.lock:
            try:
                out = sample(self.draw_model.model, num, seed=seed, label=label, out_dir=out_dir, gif=True,
                             frames=True, show_attention=True, scale=3)
            except ValueError as e:  # a label the model cannot take
                raise RequestError(HTTPStatus.BAD_REQUEST, str(e)) from None
        b64 = lambda p: base64.b64encode(Path(p).read_bytes()).decode("ascii")  # noqa: E731
        return {"gif": b64(out.files["gif"]), "frames": [b64(p) for p in out.files["frames"]],
                "grid": b64(out.files["png"]), "steps": len(out.files["frames"]), "num": num, "seed": seed,
                "seconds": round(time.perf_counter() - t0, 3)}

    def request_dir(self) -> tempfile.TemporaryDirectory:
        """A directory for one request inside the server's temporary directory, removed when the request ends."""
        return tempfile.TemporaryDirectory(dir=self.tmp_root)

    def close(self) -> None:
        shutil.rmtree(self.tmp_root, ignore_errors=True)


def display_name(raw: str | None) -> str:
    """The uploaded file's base name as the user gave it, for messages only (printable, at most 100 characters)."""
    name = Path((raw or "").replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable())[:100]
    return name or "upload"


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a client may stall mid-request before its thread gives up
    CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
           "media-src blob:; connect-src 'self'")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.app.page, "text/html; charset=utf-8",
                       {"Content-Security-Policy": self.CSP})
        elif path == "/api/info":
            self._json(HTTPStatus.OK, self.server.app.info())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"{path}: no such page"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        try:
            with self.server.app.request_dir() as tmp:  # removed before the answer goes out
                answer = self._post(url, Path(tmp))
            self._json(HTTPStatus.OK, answer)
        except RequestError as e:
            self._json(e.status, {"error": e.message})
            if e.unread:
                self._drain(e.unread)
        except Exception as e:  # one failed request must not take the server down; say what happened
            self.log_error("%s failed: %r", url.path, e)
            self.close_connection = True
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(e).__name__}: {e}"})

    def _post(self, url, tmp: Path) -> dict:
        app = self.server.app
        if url.path == "/api/transcribe":
            name = display_name(parse_qs(url.query).get("name", [""])[0])
            suffix = Path(name).suffix.lower()  # kept: some decoders go by it
            audio = tmp / ("upload" + (suffix if SAFE_SUFFIX.match(suffix) else ""))
            with open(audio, "wb") as f:
                self._receive(f, app.max_upload_bytes, name)
            return app.transcribe(audio, name)
        if url.path == "/api/draw":
            body = io.BytesIO()
            self._receive(body, MAX_JSON_BODY, "the request", allow_empty=True)
            try:
                request = json.loads(body.getvalue() or b"{}")
            except (ValueError, UnicodeDecodeError):
                raise RequestError(HTTPStatus.BAD_REQUEST, "the request body is not JSON") from None
            if not isinstance(request, dict):
                raise RequestError(HTTPStatus.BAD_REQUEST, "the request body must be a JSON object")
            return app.draw(request, tmp)
        raise RequestError(HTTPStatus.NOT_FOUND, f"{url.path}: no such endpoint",
                           unread=self._content_length(required=False) or 0)

    # ------------------------------------------------------------------------------------------------- body

    def _content_length(self, required: bool = True) -> int | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "chunked uploads are not accepted: send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            if not required:
                return None
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "the upload has no Content-Length")
        try:
            n = int(raw)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {raw!r}") from None
        return n

    def _receive(self, dest, limit: int, name: str, allow_empty: bool = False) -> None:
        """Copy the request body into the binary file `dest`, CHUNK bytes at a time. Refused (413) when
        Content-Length says it is over `limit`, before a byte is read; while reading, the count is checked against
        the limit again and only the declared length is ever read."""
        n = self._content_length()
        if n > limit:
            self.close_connection = True
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"{name}: too large ({_size(n)}; this server takes at most {_size(limit)})", unread=n)
        if n == 0 and not allow_empty:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{name}: empty upload (0 bytes)")
        got = 0
        while got < n:
            block = self.rfile.read(min(CHUNK, n - got))
            if not block:
                self.close_connection = True
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{name}: the upload ended after {got} of {n} bytes")
            got += len(block)
            if got > limit:  # cannot happen while n <= limit; kept so the bound holds whatever changes above
                self.close_connection = True
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{name}: too large")
            dest.write(block)

    def _drain(self, n: int) -> None:
        """After answering, read and discard up to DRAIN_BYTES (5 s at most) of a body we refused, then let the
        connection close: a client still sending when the socket closes under it gets a reset instead of our answer
        (a browser then shows a network error, not the message)."""
        self.close_connection = True
        left, deadline = min(n, DRAIN_BYTES), time.monotonic() + 5.0
        self.connection.settimeout(1.0)
        try:
            while left > 0 and time.monotonic() < deadline:
                block = self.rfile.read(min(CHUNK, left))
                if not block:
                    break
                left -= len(block)
        except OSError:
            pass

    # ------------------------------------------------------------------------------------------------- answers

    def _json(self, status: HTTPStatus, obj: dict) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away: nothing to tell it
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.2f} MB" if n >= 1 << 17 else f"{n} bytes"


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with the App; close() stops serving and removes the temporary directory."""

    daemon_threads = True

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False):
        self.app, self.quiet = app, quiet
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.app.close()


def make_server(app: App, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> Server:
    """Bind (port 0: any free port; read server.url) without serving yet: call serve_forever(), in a thread if need
    be, and close() to stop."""
    return Server(app, host, port, quiet)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(app: App, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> None:
    """Serve until Ctrl-C or SIGTERM (what `kill`, systemd and `docker stop` send), then clean up."""
    server = make_server(app, host, port, quiet)
    main = threading.current_thread() is threading.main_thread()  # signal handlers live in the main thread only
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    print(f"speechdraw serve: {server.url} (speech: {app.asr.name or app.asr.error}; DRAW: "
          f"{app.draw_model.name or app.draw_model.error}); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
