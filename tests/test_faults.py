"""Faults from ROBUSTNESS.md that no other test injects, injected for real on the app's code paths.

A client that leaves mid-job and one session that starts two jobs go through the launched Generate
tab and its queue API; a hung decoder is a real child process; network faults come from servers on
127.0.0.1 that refuse, stall or fail; a CPU ``MemoryError`` is raised inside the real denoising
loop.
Each test checks what a user would see: the error type and its message, that the server keeps
serving, and that no partial output is left behind. Nothing is downloaded.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from opusclip_ui import notify
from opusclip_ui.errors import (NetworkError, OpusClipError, OperationTimeoutError,
                                WeightsUnavailableOfflineError)
from opusclip_ui.settings import Settings

from .video_fixtures import media  # noqa: F401

# gradio, gradio_client and httpx are imported inside the tests: the hung decoder below runs in a
# child process that imports this module, and should start quickly.

pytest_plugins = ["tests.models_fixtures"]

MODEL = "tiny-random-t2v"
GENERATE_ARGS = [MODEL, "a red kite over the sea", 1, "low", 3, "", None, None, "segments"]


# --- helpers --------------------------------------------------------------------------------------

def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connecting to it is refused (network down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _decodes(path: Path) -> int:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    next(gen)
    return len([np.frombuffer(f, np.uint8) for f in gen])


def _partial_files(folder: Path) -> list[str]:
    """Files a user must never see: temp files, or a video without its sidecar (or vice versa).

    A poster (``.jpg``) beside a complete video and sidecar is part of the result.
    """
    if not folder.exists():
        return []
    bad = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        if p.name.startswith(".") or p.suffix not in (".mp4", ".json", ".jpg"):
            bad.append(p.name)
        elif p.suffix == ".jpg" and not p.with_suffix(".mp4").is_file():
            bad.append(p.name)
        elif p.suffix == ".mp4" and not p.with_suffix(".json").is_file():
            bad.append(p.name)
        elif p.suffix == ".json" and not p.with_suffix(".mp4").is_file():
            bad.append(p.name)
    return bad


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Gate:
    """A slow accelerator: the transformer's forward waits at the gate until the test opens it."""

    def __init__(self, pipe) -> None:
        self.arrived = threading.Event()
        self.open = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()
        tf = pipe.transformer
        orig = tf.forward

        def forward(*a, **k):
            with self._lock:
                self.calls += 1
            self.arrived.set()
            self.open.wait(60)
            return orig(*a, **k)

        tf.forward = forward


# --- the launched Generate tab --------------------------------------------------------------------

def _launch(services, port):
    from components import generate_tab

    from tests.app_support import launch_tab

    return launch_tab(services, generate_tab, port, show_error=True)[0]


@pytest.fixture
def app(model_settings, free_port):
    """The Generate tab on 127.0.0.1 with the tiny model loaded and a gate on its transformer."""
    from opusclip_ui.services import build_services

    services = build_services(model_settings)
    loaded = services.models.load(MODEL)
    gate = Gate(loaded.model)
    runs = {"finished": 0, "errors": []}
    done = threading.Condition()
    real_run = services.generate.run

    def counted_run(*a, **k):  # the real run; the test only learns when it ends
        try:
            return real_run(*a, **k)
        except Exception as exc:
            runs["errors"].append(exc)
            raise
        finally:
            with done:
                runs["finished"] += 1
                done.notify_all()

    services.generate.run = counted_run
    demo = _launch(services, free_port)

    def wait_finished(n: int) -> bool:
        with done:
            return done.wait_for(lambda: runs["finished"] >= n, timeout=120)

    yield {"url": f"http://127.0.0.1:{free_port}", "services": services, "gate": gate, "demo": demo,
           "runs": runs, "wait_finished": wait_finished}
    gate.open.set()
    demo.close()
    services.models.unload_all()


def _fn_index(demo, api_name: str) -> int:
    return next(i for i, fn in demo.fns.items() if fn.api_name == api_name)


def _session_folder(services, session: str) -> Path:
    from opusclip_ui.generate.outputs import session_folder

    return session_folder(services.settings.outputs, session)


def _join_and_leave(app, session: str) -> None:
    """A browser tab that starts a generation over the queue API and is closed once the job runs.

    Like a real page it holds Gradio's heartbeat stream open; closing the tab drops it (and the
    event stream), which is how the server learns that the page is gone.
    """
    import contextlib

    import httpx

    base = app["url"] + "/gradio_api"
    with httpx.Client(timeout=30) as http, contextlib.ExitStack() as page:
        beat = page.enter_context(http.stream("GET", f"{base}/heartbeat/{session}"))
        alive = beat.iter_lines()  # keep a reference: a collected iterator closes the stream
        next(alive)  # "data: ALIVE": the page is open
        r = http.post(f"{base}/queue/join", json={
            "data": GENERATE_ARGS, "fn_index": _fn_index(app["demo"], "generate"),
            "session_hash": session, "event_data": None, "trigger_id": None})
        r.raise_for_status()
        with http.stream("GET", f"{base}/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if '"process_starts"' in line:
                    break
            assert app["gate"].arrived.wait(60), "the job never reached the model"
        # leaving the with-blocks closes the heartbeat and the event stream: the tab is gone


def _client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)


def test_client_that_leaves_mid_job_leaves_no_partial_output_and_the_server_keeps_serving(app):
    _join_and_leave(app, "gone-tab")
    time.sleep(1.5)  # let the server notice the closed stream (its heartbeat loop), then go on
    app["gate"].open.set()
    assert app["wait_finished"](1), "the abandoned job never ended: it holds the GPU slot"

    out = _client(app["url"] + "/").predict(*GENERATE_ARGS, api_name="/generate")
    video = Path(out[0]["video"] if isinstance(out[0], dict) else out[0])
    assert _decodes(video) == 8 and out[2]["seed"] == 3  # another user is served in full
    assert _partial_files(_session_folder(app["services"], "gone-tab")) == []
    assert _partial_files(app["services"].settings.outputs) == []


def test_client_that_leaves_mid_job_stops_the_run_at_the_next_step(app):
    _join_and_leave(app, "gone-tab")
    time.sleep(1.5)
    calls_when_left = app["gate"].calls
    app["gate"].open.set()
    assert app["wait_finished"](1)
    assert app["gate"].calls <= calls_when_left + 1  # stopped like Cancel: at the next step
    assert list(_session_folder(app["services"], "gone-tab").glob("*.mp4")) == []


def test_two_jobs_from_one_session_at_once_both_finish_with_separate_videos(app):
    client = _client(app["url"] + "/")  # one client is one session
    app["gate"].open.set()
    first = client.submit(*GENERATE_ARGS, api_name="/generate")
    second = client.submit(*(GENERATE_ARGS[:4] + [4] + GENERATE_ARGS[5:]), api_name="/generate")
    a, b = first.result(timeout=180), second.result(timeout=180)
    va = Path(a[0]["video"] if isinstance(a[0], dict) else a[0])
    vb = Path(b[0]["video"] if isinstance(b[0], dict) else b[0])
    assert va != vb and {a[2]["seed"], b[2]["seed"]} == {3, 4}
    assert _decodes(va) == _decodes(vb) == 8
    assert va.read_bytes() != vb.read_bytes()
    # the later answer's history holds both videos of this session, and nothing partial is left
    assert len(max(a[4], b[4], key=len)) == 2
    assert _partial_files(app["services"].settings.outputs) == []
    assert app["runs"]["errors"] == []


def test_cancel_with_two_running_jobs_in_one_session_stops_both(model_settings, free_port):
    """With two GPU slots one session's two jobs both start; its Cancel button must stop both."""
    from opusclip_ui.services import build_services

    settings = model_settings.model_copy(update={"gpu_concurrency": 2})
    services = build_services(settings)
    gate = Gate(services.models.load(MODEL).model)
    demo = _launch(services, free_port)
    try:
        client = _client(f"http://127.0.0.1:{free_port}/")
        jobs = [client.submit(*(GENERATE_ARGS[:4] + [seed] + GENERATE_ARGS[5:]),
                              api_name="/generate") for seed in (1, 2)]
        from gradio_client.utils import Status

        # the first job is in the model, the second has started too (it waits for the pipeline)
        deadline = time.monotonic() + 60
        running = (Status.PROCESSING, Status.PROGRESS, Status.LOG, Status.ITERATING)
        while time.monotonic() < deadline and not (
                gate.calls >= 1 and all(j.status().code in running for j in jobs)):
            time.sleep(0.05)
        assert gate.calls >= 1, "the first job never reached the model"
        codes = [j.status().code for j in jobs]
        assert all(c in running for c in codes), f"both jobs must be running: {codes}"
        time.sleep(1.0)  # both handlers register their cancel token as they start
        client.predict(api_name="/cancel_generate")
        gate.open.set()
        outcomes = []
        for job in jobs:
            try:
                job.result(timeout=120)
                outcomes.append("finished")
            except Exception as exc:  # AppError carrying our Cancelled message
                outcomes.append(str(exc))
        assert all(o != "finished" for o in outcomes), outcomes
        assert list(settings.outputs.rglob("*.mp4")) == []
    finally:
        gate.open.set()
        demo.close()
        services.models.unload_all()


# --- CPU MemoryError inside the real denoising loop -----------------------------------------------

def test_cpu_memory_error_while_denoising_recovers_on_the_next_rung(model_settings):
    from opusclip_ui.generate.service import GenerateService
    from opusclip_ui.models.manager import ModelManager

    manager = ModelManager(model_settings)
    try:
        pipe = manager.load(MODEL).model
        orig = pipe.transformer.forward
        raised = []

        def forward(*a, **k):
            if not raised:
                raised.append(True)
                raise MemoryError()  # what CPython raises when malloc fails
            return orig(*a, **k)

        pipe.transformer.forward = forward
        svc = GenerateService(model_settings, models=manager)
        with notify.collect_warnings() as warned:
            res = svc.run(MODEL, "a red kite over the sea", 1, "low", 5, session_id="ram")
        assert raised and res.rungs and res.rungs[0].rung == "retry"
        assert warned, "the user was not told about the memory-saving step"
        assert _decodes(res.video_path) == 8
        assert _partial_files(model_settings.outputs) == []
    finally:
        manager.unload_all()


# --- a decoder that hangs -------------------------------------------------------------------------

def hanging_probe(pid_file: str, path: str, limits: dict) -> dict:
    """A decoder stuck on a hostile file; it records its pid so the test can look for it."""
    with open(pid_file, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(600)
    return {"ok": False, "code": "unreachable", "facts": {}}

def test_hung_decoder_is_killed_at_the_timeout_and_the_next_file_still_works(media, tmp_path,
                                                                                monkeypatch):
    from opusclip_ui.video import _media
    from opusclip_ui.video.probe import load_video_file

    import functools

    pid_file = tmp_path / "decoder.pid"
    real_probe = _media.probe_file
    monkeypatch.setattr(_media, "probe_file", functools.partial(hanging_probe, str(pid_file)))
    s = Settings(data_dir=tmp_path / "data", probe_timeout_s=5.0)
    with pytest.raises(OperationTimeoutError) as ei:
        load_video_file(media.get("mp4_h264.mp4"), s)
    assert "did not finish" in ei.value.user_message and ei.value.hint
    pid = int(pid_file.read_text())
    for _ in range(100):  # the kill is asynchronous: give the kernel a moment to reap it
        if not _pid_alive(pid):
            break
        time.sleep(0.05)
    assert not _pid_alive(pid), f"the hung decoder (pid {pid}) is still running"
    monkeypatch.setattr(_media, "probe_file", real_probe)
    assert load_video_file(media.get("mp4_h264.mp4"), s).width > 0  # the app keeps working


# --- network faults during URL ingest -------------------------------------------------------------

class _FlakyVideo(BaseHTTPRequestHandler):
    """Drops the first two connections without an answer (a flaky link), then serves the video."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.server.hits += 1
        if self.server.hits <= 2:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = self.server.payload
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def flaky_video_server(media):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyVideo)
    srv.daemon_threads = True
    srv.hits = 0
    srv.payload = media.get("mp4_h264.mp4").read_bytes()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url_settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", allow_private_urls=True, url_timeout_s=2.0,
                    url_max_mb=5)


def test_inspect_of_a_url_with_the_network_down_retries_then_says_so(tmp_path):
    from opusclip_ui.video.service import InspectService

    s = _url_settings(tmp_path)
    svc = InspectService(s)
    with notify.collect_warnings():
        with pytest.raises(NetworkError) as ei:
            svc.inspect(f"http://127.0.0.1:{_closed_port()}/clip.mp4", thumbnails=0, preview=False)
    assert "Could not reach the server" in ei.value.user_message and ei.value.hint
    assert ei.value.transient
    leftovers = [p for p in (s.data_dir).rglob("*") if p.is_file() and "download" in p.parts]
    assert leftovers == []  # nothing half-downloaded is kept


def test_inspect_of_a_url_over_a_flaky_link_retries_and_succeeds(flaky_video_server, tmp_path,
                                                                   media):
    from opusclip_ui.video.service import InspectService

    s = _url_settings(tmp_path)
    url = f"http://127.0.0.1:{flaky_video_server.server_address[1]}/clip.mp4"
    res = InspectService(s).inspect(url, thumbnails=0, preview=False)
    assert flaky_video_server.hits == 3  # two dropped connections, then the file
    assert res.source.read_bytes() == media.get("mp4_h264.mp4").read_bytes()
    assert res.info.width > 0
    assert [p.name for p in res.source.parent.iterdir()] == [res.source.name]  # no temp files


# --- network faults during a model download -------------------------------------------------------

class _FailingHub(BaseHTTPRequestHandler):
    """A Hugging Face Hub endpoint that answers every request with 503 (a bad minute)."""

    def log_message(self, *args):
        pass

    def _fail(self):
        self.server.hits += 1
        body = b'{"error": "Service Unavailable"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = _fail


class _StallingHub:
    """Accepts connections and never answers (a link so slow that nothing arrives)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


def _hub_store(model_settings, monkeypatch, endpoint: str, delays: list):
    """A WeightsStore that pulls with the real huggingface_hub client from ``endpoint``."""
    import huggingface_hub.constants as hub_constants

    from opusclip_ui.models.manager import ModelManager
    from opusclip_ui.models.weights import WeightsStore

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", endpoint)
    store = WeightsStore(model_settings.cache, reachable=lambda: True, sleep=delays.append,
                         timeout_s=2.0)
    manager = ModelManager(model_settings, store=store)
    card = manager.card("minilm").model_copy(update={"name": "hubenc", "model_path": "org/enc",
                                                     "revision": "main"})
    return store, manager, card


def _assert_nothing_usable_was_kept(store, card):
    assert store.status(card).status == "downloadable"
    with pytest.raises(WeightsUnavailableOfflineError, match="not downloaded yet"):
        store.resolve(card)
    assert not (store.hub_cache / ".complete").exists() or not any(
        (store.hub_cache / ".complete").iterdir())


def test_model_download_with_the_network_down_is_a_clear_error_and_keeps_nothing(model_settings,
                                                                                    monkeypatch):
    delays: list[float] = []
    store, _, card = _hub_store(model_settings, monkeypatch,
                                f"http://127.0.0.1:{_closed_port()}", delays)
    with pytest.raises(OpusClipError) as ei:
        store.pull(card)
    assert isinstance(ei.value, (NetworkError, WeightsUnavailableOfflineError)), type(ei.value)
    assert "reach" in ei.value.user_message and ei.value.hint
    _assert_nothing_usable_was_kept(store, card)


def test_model_download_with_the_network_down_is_retried_with_backoff(model_settings, monkeypatch):
    delays: list[float] = []
    store, _, card = _hub_store(model_settings, monkeypatch,
                                f"http://127.0.0.1:{_closed_port()}", delays)
    # retried 4 times, then the error that says what is missing and the command that fixes it
    with pytest.raises(WeightsUnavailableOfflineError, match="cannot be reached") as info:
        store.pull(card)
    assert "models pull" in info.value.friendly()
    assert len(delays) == 4 and delays == sorted(delays)
    _assert_nothing_usable_was_kept(store, card)


@pytest.fixture
def failing_hub():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FailingHub)
    srv.daemon_threads = True
    srv.hits = 0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_model_download_from_a_failing_hub_is_a_clear_error_and_keeps_nothing(model_settings,
                                                                              monkeypatch,
                                                                              failing_hub):
    delays: list[float] = []
    store, manager, card = _hub_store(model_settings, monkeypatch,
                                      f"http://127.0.0.1:{failing_hub.server_address[1]}", delays)
    with pytest.raises(OpusClipError) as ei:
        store.pull(card)
    assert failing_hub.hits >= 1 and ei.value.hint
    _assert_nothing_usable_was_kept(store, card)


def test_model_download_from_a_failing_hub_is_retried_with_backoff(model_settings, monkeypatch,
                                                                   failing_hub):
    delays: list[float] = []
    store, _, card = _hub_store(model_settings, monkeypatch,
                                f"http://127.0.0.1:{failing_hub.server_address[1]}", delays)
    with pytest.raises(WeightsUnavailableOfflineError, match="answered HTTP 503"):
        store.pull(card)
    assert len(delays) == 4 and delays == sorted(delays)
    _assert_nothing_usable_was_kept(store, card)


@pytest.mark.slow
def test_model_download_from_a_hub_that_never_answers_times_out(model_settings, monkeypatch):
    hub = _StallingHub()
    delays: list[float] = []
    store, _, card = _hub_store(model_settings, monkeypatch, f"http://127.0.0.1:{hub.port}", delays)
    box: dict = {}

    def pull():
        try:
            box["result"] = store.pull(card)
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    t = threading.Thread(target=pull, daemon=True)
    t.start()
    t.join(90)  # not a timing assertion: a bound on "for ever"
    still_waiting = t.is_alive()
    hub.close()  # lets a hung pull fail fast, so no thread outlives the test
    t.join(10)
    assert not still_waiting, "the pull was still waiting for the hub after 90 s"
    assert isinstance(box.get("error"), (OperationTimeoutError, NetworkError,
                                         WeightsUnavailableOfflineError)), box
    _assert_nothing_usable_was_kept(store, card)
