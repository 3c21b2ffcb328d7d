"""URL ingest against a tiny HTTP server on 127.0.0.1 (loopback allowed only by the test setting)."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from opusclip_ui import notify
from opusclip_ui.errors import (FileTooLargeError, InvalidRequestError, NetworkError,
                                OperationTimeoutError)
from opusclip_ui.settings import Settings
from opusclip_ui.video.fetch import check_url, download, resolve_checked

from .video_fixtures import media  # noqa: F401

PAYLOAD = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 400  # ~100 kB


class _Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, body: bytes, status: int = 200, length: int | None = None):
        self.send_response(status)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        _Handler.hits[path] = _Handler.hits.get(path, 0) + 1
        n = _Handler.hits[path]
        if path == "/ok.mp4":
            return self._send(self.server.payload)
        if path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok.mp4")
            self.end_headers()
            return None
        if path.startswith("/to/"):  # /to/<absolute url without scheme>
            self.send_response(301)
            self.send_header("Location", "http://" + path[4:])
            self.end_headers()
            return None
        if path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
            return None
        if path == "/huge":
            return self._send(b"", length=50 * 2**30)
        if path == "/huge-stream":  # no length, streams past the cap
            self.send_response(200)
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"\x00" * 65536)
            return None
        if path == "/short":
            return self._send(PAYLOAD[:1000], length=len(PAYLOAD))
        if path == "/flaky":
            if n <= 2:
                return self._send(b"busy", status=503)
            return self._send(self.server.payload)
        if path == "/missing":
            return self._send(b"nope", status=404)
        if path == "/slow":
            time.sleep(3)
            return self._send(PAYLOAD)
        if path == "/drip":
            self.send_response(200)
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b"\x00" * 10)
                self.wfile.flush()
                time.sleep(0.1)
            return None
        return self._send(b"?", status=404)


@pytest.fixture
def server(media):
    _Handler.hits = {}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.payload = media.get("mp4_h264.mp4").read_bytes()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def s(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", allow_private_urls=True, url_timeout_s=1.0,
                    url_max_mb=1)


def _no_sleep(_):
    return None


def test_download_ok_is_complete_and_reports_progress(server, s, tmp_path, media):
    seen = []
    with notify.sink(on_progress=lambda f, d: seen.append(f)):
        path = download(server + "/ok.mp4", tmp_path / "dl", s)
    assert path.read_bytes() == media.get("mp4_h264.mp4").read_bytes()
    assert seen and seen[-1] == pytest.approx(1.0)
    assert [p.name for p in (tmp_path / "dl").iterdir()] == ["ok.mp4"]  # no temp files left


def test_redirect_is_followed(server, s, tmp_path):
    assert download(server + "/redirect", tmp_path / "dl", s).name == "ok.mp4"


def test_loopback_is_refused_by_default_without_any_request(server, tmp_path):
    plain = Settings(data_dir=tmp_path / "data")
    with pytest.raises(InvalidRequestError, match="private or local network address"):
        download(server + "/ok.mp4", tmp_path / "dl", plain)
    assert _Handler.hits == {}


@pytest.mark.parametrize("host", ["localhost", "[::1]", "127.1.2.3", "0.0.0.0"])
def test_local_names_are_refused_by_default(host, tmp_path):
    with pytest.raises(InvalidRequestError, match="private or local"):
        download(f"http://{host}:9/x.mp4", tmp_path, Settings(data_dir=tmp_path))


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.10", "172.16.5.4", "169.254.169.254",
                                     "100.64.0.1", "224.0.0.1", "fd00::1", "fe80::1",
                                     "::ffff:10.0.0.1"])
def test_private_and_link_local_addresses_are_refused_even_in_test_mode(address):
    # Literal addresses resolve locally: nothing is sent anywhere.
    with pytest.raises(InvalidRequestError, match="private or local"):
        resolve_checked(address, 80, allow_loopback=True)


def test_redirect_to_a_private_address_is_refused(server, s, tmp_path):
    with pytest.raises(InvalidRequestError, match="169.254.169.254"):
        download(server + "/to/169.254.169.254/latest/meta-data", tmp_path / "dl", s)


def test_redirect_loop_stops(server, s, tmp_path):
    with pytest.raises(NetworkError, match="redirected more than"):
        download(server + "/loop", tmp_path / "dl", s, max_retries=0)


@pytest.mark.parametrize("url", ["ftp://example.com/a.mp4", "file:///etc/passwd",
                                 "javascript:alert(1)", "http:///nohost", "gopher://x/"])
def test_only_http_and_https(url):
    with pytest.raises(InvalidRequestError):
        check_url(url)


def test_announced_huge_file_is_refused_before_reading(server, s, tmp_path):
    with pytest.raises(FileTooLargeError, match="over the 1 MB limit"):
        download(server + "/huge", tmp_path / "dl", s)
    assert list((tmp_path / "dl").iterdir()) == []


def test_streamed_past_the_cap_is_stopped_and_nothing_kept(server, s, tmp_path):
    with pytest.raises(FileTooLargeError, match="larger than the 1 MB limit"):
        download(server + "/huge-stream", tmp_path / "dl", s)
    assert list((tmp_path / "dl").iterdir()) == []


def test_short_download_is_never_used(server, s, tmp_path):
    with pytest.raises(NetworkError, match="ended early"):
        download(server + "/short", tmp_path / "dl", s, max_retries=1, sleep=_no_sleep)
    assert list((tmp_path / "dl").iterdir()) == []
    assert _Handler.hits["/short"] == 2  # retried once: an early end is transient


def test_transient_errors_are_retried_with_backoff(server, s, tmp_path):
    delays = []
    path = download(server + "/flaky", tmp_path / "dl", s, max_retries=3, sleep=delays.append)
    assert path.stat().st_size > 0
    assert _Handler.hits["/flaky"] == 3
    assert len(delays) == 2 and delays[1] > delays[0]


def test_client_errors_are_not_retried(server, s, tmp_path):
    with pytest.raises(NetworkError, match="HTTP 404"):
        download(server + "/missing", tmp_path / "dl", s, max_retries=3, sleep=_no_sleep)
    assert _Handler.hits["/missing"] == 1


def test_silent_server_times_out(server, s, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(OperationTimeoutError):
        download(server + "/slow", tmp_path / "dl", s, max_retries=0)
    assert time.monotonic() - t0 < 2.9  # gave up before the server answered


def test_never_ending_download_hits_the_total_timeout(server, s, tmp_path):
    with pytest.raises(OperationTimeoutError, match="did not finish"):
        download(server + "/drip", tmp_path / "dl", s, max_retries=0, total_timeout=0.5)
    assert list((tmp_path / "dl").iterdir()) == []


def test_cli_inspects_a_link(server, tmp_path, monkeypatch, capsys):
    import json

    from opusclip_ui.cli import main

    monkeypatch.setenv("OPUSCLIP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPUSCLIP_ALLOW_PRIVATE_URLS", "true")  # test-only switch: loopback
    assert main(["inspect", server + "/redirect", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["width"], out["video_codec"], out["format"]) == (160, "h264", "mp4")
    assert not list((tmp_path / "data").rglob("*.mp4"))  # the download went with its job folder
