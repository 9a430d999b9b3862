"""Downloads against a real HTTP server on 127.0.0.1: checksum, timeout, resume of a partial file."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time

import pytest

from speechdraw.engine.download import DownloadError, download

DATA = bytes(range(256)) * 4000  # 1 MB


class Handler(http.server.BaseHTTPRequestHandler):
    ranges: list[str | None] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        Handler.ranges.append(self.headers.get("Range"))
        if self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA[:1000])
            self.wfile.flush()
            time.sleep(3)  # the client's timeout is shorter
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and self.path == "/data.bin":  # /norange.bin ignores Range like some servers do
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(DATA) - start))
        self.end_headers()
        self.wfile.write(DATA[start:])


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


MD5 = hashlib.md5(DATA).hexdigest()
SHA256 = hashlib.sha256(DATA).hexdigest()


def test_good_download_is_checked_and_kept(server, tmp_path):
    out = download(f"{server}/data.bin", tmp_path / "data.bin", md5=MD5, sha256=SHA256)
    assert out.read_bytes() == DATA and not (tmp_path / "data.bin.part").exists()
    Handler.ranges.clear()
    assert download(f"{server}/data.bin", out, md5=MD5) == out and Handler.ranges == []  # present: not fetched again


def test_checksum_mismatch_is_one_line_and_nothing_is_kept(server, tmp_path):
    with pytest.raises(DownloadError, match="md5 .* expected 0+; the download was deleted") as e:
        download(f"{server}/data.bin", tmp_path / "data.bin", md5="0" * 32)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "data.bin").write_bytes(DATA[:10])  # a wrong file already in place is refused, not trusted
    with pytest.raises(DownloadError, match="does not match"):
        download(f"{server}/data.bin", tmp_path / "data.bin", sha256=SHA256)


def test_a_stalled_server_times_out_and_the_partial_file_is_kept_for_resume(server, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="timed out.*1000 bytes kept in data.bin.part"):
        download(f"{server}/stall", tmp_path / "data.bin", timeout=0.5)
    assert time.monotonic() - t0 < 2.5
    assert not (tmp_path / "data.bin").exists()


def test_a_partial_file_is_resumed_with_a_range_request(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(DATA[:300_000])
    Handler.ranges.clear()
    out = download(f"{server}/data.bin", tmp_path / "data.bin", sha256=SHA256)
    assert Handler.ranges == ["bytes=300000-"] and out.read_bytes() == DATA
    # A server that ignores Range sends everything again: the partial file is overwritten, not appended to.
    (tmp_path / "other.bin.part").write_bytes(DATA[:300_000])
    out = download(f"{server}/norange.bin", tmp_path / "other.bin", md5=MD5)
    assert out.read_bytes() == DATA
