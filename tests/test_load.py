"""Many users at once, through the real client, against the real ``python app.py``.

Sixteen ``gradio_client`` sessions (one ``Client`` each, in threads) run a mix of good and bad
inspections, tiny generations and model listings at the same time. One run of that mix (over 100
jobs, after a warm-up) backs several tests: every good job returns real results, every bad job
fails alone with our message, no session reads another's files by guessing, and the server's
memory comes back to its warm level. A second server with a one-place queue is flooded to show a
full queue answers "busy" instead of hanging.

Jobs are small on purpose (160x120 clips of a second, the tiny random pipeline at 1 s and low
quality), so the whole module fits CI's 2 cores. Timings live in ``benchmarks/bench_load.py``.
"""
from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.browser_support import AppServer
from tests.video_fixtures import MediaFactory

pytest_plugins = ["tests.models_fixtures"]
pytestmark = pytest.mark.slow

SESSIONS = 16
MODEL = "tiny-random-t2v"
#: One session's jobs, rotated by the session's number so different kinds overlap in time.
SCHEDULE = ("generate", "inspect", "list_models", "inspect_text", "generate", "inspect_empty",
            "list_models")
#: What the user must read for each bad job (our guard's message, not Gradio's).
BAD_MESSAGES = {"inspect_text": "it looks like a text file", "inspect_empty": "is empty (0 bytes)"}
RSS_SLACK_MB = 150
JOB_TIMEOUT_S = 240  # a job that takes longer is a hang, not slowness


# --- the mix (also run by benchmarks/bench_load.py) ---------------------------------------------

@dataclass
class Job:
    session: int
    kind: str
    seconds: float = 0.0
    result: Any = None
    error: BaseException | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def job_args(kind: str, media: MediaFactory, seed: int) -> tuple[str, tuple]:
    """(api_name, args) of one job of ``kind``."""
    if kind == "generate":
        return "/generate", (MODEL, f"a red kite number {seed}", 1, "low", seed, "", None, None,
                             "segments")
    if kind == "list_models":
        return "/list_models", (MODEL,)
    name = {"inspect": "mp4_h264_aac.mp4", "inspect_text": "text.mp4",
            "inspect_empty": "empty.mp4"}[kind]
    return "/inspect", (handle_file(str(media.get(name))), "", 4)


def run_job(client: Client, session: int, kind: str, media: MediaFactory, seed: int) -> Job:
    job = Job(session, kind)
    api, args = job_args(kind, media, seed)
    start = time.perf_counter()
    try:
        job.result = client.submit(*args, api_name=api).result(timeout=JOB_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - recorded and judged by the caller
        job.error = exc
    job.seconds = time.perf_counter() - start
    job.extra["seed"] = seed
    return job


def run_mix(url: str, media: MediaFactory, downloads: Path, *, sessions: int = SESSIONS,
            schedule: tuple[str, ...] = SCHEDULE, rounds: int = 1) -> list[Job]:
    """``sessions`` clients in threads, each running ``schedule`` (rotated) ``rounds`` times."""
    for name in ("mp4_h264_aac.mp4", "text.mp4", "empty.mp4"):
        media.get(name)  # built before the clock starts, never concurrently
    clients = [Client(url, verbose=False, download_files=str(downloads / f"s{i:02d}"))
               for i in range(sessions)]
    barrier = threading.Barrier(sessions)

    def session(i: int) -> list[Job]:
        mine = schedule[i % len(schedule):] + schedule[:i % len(schedule)]
        barrier.wait()
        return [run_job(clients[i], i, kind, media, seed=1000 * i + n)
                for n, kind in enumerate(mine * rounds)]

    with cf.ThreadPoolExecutor(sessions) as pool:
        done = [f.result() for f in [pool.submit(session, i) for i in range(sessions)]]
    for c in clients:
        c.close()
    return [job for jobs in done for job in jobs]


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def settled_rss_mb(pid: int, seconds: float = 8.0) -> float:
    """The lowest RSS over a few seconds of quiet (lets collectors and caches settle)."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(rss_mb(pid))
        time.sleep(0.5)
    return min(samples)


def decoded_frames(path: str | Path) -> tuple[int, tuple[int, int]]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    return sum(1 for _ in gen), tuple(meta["size"])


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def media(tmp_path_factory) -> MediaFactory:
    return MediaFactory(tmp_path_factory.mktemp("load-media"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_cache):
    tmp = tmp_path_factory.mktemp("load-server")
    with AppServer(tmp, cache_dir=tiny_cache) as srv:
        yield srv


@dataclass
class LoadRun:
    jobs: list[Job]
    baseline_mb: float
    after_mb: float
    workers_before: int
    workers_after: int
    warmup_failures: int
    report: dict[str, Any]


@pytest.fixture(scope="module")
def load_run(server, media, tmp_path_factory) -> LoadRun:
    """Warm up (a few jobs of each kind), take the baseline, run the 16-session mix, measure."""
    downloads = tmp_path_factory.mktemp("load-downloads")
    warm = run_mix(server.url, media, downloads / "warm", sessions=2, rounds=1)
    assert all(j.error is None for j in warm if j.kind not in BAD_MESSAGES), [
        (j.kind, j.error) for j in warm if j.error]
    import psutil

    proc = psutil.Process(server.proc.pid)
    baseline = settled_rss_mb(server.proc.pid)
    workers_before = len(proc.children(recursive=True))
    jobs = run_mix(server.url, media, downloads / "load")
    after = settled_rss_mb(server.proc.pid)
    workers_after = len(proc.children(recursive=True))
    reporter = Client(server.url, verbose=False)
    _, report = reporter.predict(api_name="/error_report")
    reporter.close()
    return LoadRun(jobs, baseline, after, workers_before, workers_after,
                   sum(1 for j in warm if j.kind in BAD_MESSAGES), report)


# --- the tests -----------------------------------------------------------------------------------

def test_sixteen_sessions_ran_over_a_hundred_jobs_of_every_kind(load_run):
    kinds = {j.kind for j in load_run.jobs}
    assert len(load_run.jobs) >= 100
    assert {j.session for j in load_run.jobs} == set(range(SESSIONS))
    assert kinds == set(SCHEDULE)


def test_every_good_job_completes_with_real_results(load_run):
    good = [j for j in load_run.jobs if j.kind not in BAD_MESSAGES]
    failed = [(j.session, j.kind, repr(j.error)) for j in good if j.error is not None]
    assert not failed
    for job in good:
        if job.kind == "inspect":
            preview, props, gallery, raw, *_ = job.result
            assert raw["fps"] == 25 and raw["frame_count"] == 25 and raw["width"] == 160
            assert raw["file_path"] == "mp4_h264_aac.mp4" and len(gallery) == 4
            assert "| Frame rate | 25 |" in props and Path(preview).stat().st_size > 0
        elif job.kind == "generate":
            video, summary, sidecar, download, history = job.result
            path = video["video"] if isinstance(video, dict) else video
            assert decoded_frames(path) == (8, (32, 32))
            assert sidecar["seed"] == job.extra["seed"]
            assert sidecar["prompt"] == f"a red kite number {job.extra['seed']}"
            assert f"Seed {job.extra['seed']}" in summary
            # history is per session: only this session's own videos, never another's
            mine = {j.extra["seed"] for j in load_run.jobs
                    if j.session == job.session and j.kind == "generate"}
            seeds = {int(item["caption"].split(" · ")[0]) for item in history}
            assert job.extra["seed"] in seeds and seeds <= mine
        elif job.kind == "list_models":
            dropdown, overview, details, loaded = job.result
            assert MODEL in overview and f"### {MODEL}" in details


def test_every_bad_job_fails_alone_with_our_message(load_run):
    bad = [j for j in load_run.jobs if j.kind in BAD_MESSAGES]
    assert len(bad) == 2 * SESSIONS
    for job in bad:
        assert isinstance(job.error, AppError), (job.kind, job.error)
        assert BAD_MESSAGES[job.kind] in str(job.error), str(job.error)
        assert "Traceback" not in str(job.error) and "Something went wrong" not in str(job.error)
    # each bad job was recorded once, as the inspect handler's own failure, and nothing else failed
    expected = len(bad) + load_run.warmup_failures
    assert load_run.report["total"] == expected, load_run.report
    assert load_run.report["by_context"] == {"inspect.inspect": expected}, load_run.report
    assert set(load_run.report["by_type"]) == {"InvalidVideoError"}, load_run.report
    # and every session went on after its bad jobs: its later jobs in the schedule succeeded
    for s in range(SESSIONS):
        mine = [j for j in load_run.jobs if j.session == s]
        last_bad = max(i for i, j in enumerate(mine) if j.kind in BAD_MESSAGES)
        assert all(j.error is None for j in mine[last_bad + 1:] if j.kind not in BAD_MESSAGES)


def test_server_memory_returns_to_its_warm_baseline_after_the_run(load_run):
    assert load_run.after_mb <= load_run.baseline_mb + RSS_SLACK_MB, (
        f"RSS {load_run.baseline_mb:.0f} MB warm -> {load_run.after_mb:.0f} MB after "
        f"{len(load_run.jobs)} jobs")
    # no worker process is left behind either
    assert load_run.workers_after <= load_run.workers_before


def _file_url(base: str, path: str | Path) -> str:
    return f"{base}gradio_api/file={path}"


def test_file_routes_serve_only_exact_unguessable_names(server, load_run, media):
    outputs = server.data / "outputs"
    generated = sorted((outputs / "generated").glob("*/*.mp4"))
    assert len({p.parent for p in generated}) >= SESSIONS  # one folder per session
    owner = Client(server.url, verbose=False, download_files=False)  # keep the server's links
    video, *_ = owner.predict(*job_args("generate", media, 7)[1], api_name="/generate")
    owner.close()
    served = video.get("video") or video  # FileData: the server's copy in Gradio's cache
    mine = next((outputs / "generated").glob(f"*/{served['orig_name']}"))
    other = next(p for p in generated if p.parent != mine.parent)
    cache = Path(served["path"]).parent
    with httpx.Client(timeout=30) as http:
        # the owner's link works, and so does the exact output path: both hold random names
        for known in (served["url"], _file_url(server.url, mine)):
            got = http.get(known)
            assert got.status_code == 200 and got.content == mine.read_bytes(), known
        # guessed paths: folders, a sibling's name with another random part, a traversal
        stem = other.name.rsplit("-", 1)[0]
        guesses = [outputs, outputs / "generated", other.parent, outputs / "inspect",
                   other.parent / f"{stem}-AAAAAAAAAAAAAAAAAAAAAA.mp4",
                   other.parent / f"{stem}.mp4", other.parent / "..",
                   f"{other.parent}/../{mine.parent.name}", server.data / "gradio-tmp", cache,
                   cache.parent / ("0" * len(cache.name)) / mine.name,
                   cache.parent / cache.name / other.name,
                   server.data / "logs" / "opusclip.log", server.config]
        for guess in guesses:
            r = http.get(_file_url(server.url, guess))
            assert r.status_code in (400, 403, 404), (str(guess), r.status_code, r.text[:200])
            assert b"ftyp" not in r.content[:64] and b"data_dir" not in r.content
        # a folder URL never lists what is inside it
        r = http.get(_file_url(server.url, other.parent) + "/")
        assert r.status_code in (400, 403, 404) and other.name not in r.text


def test_full_queue_answers_busy_and_the_server_keeps_serving(tmp_path, tiny_cache, media):
    """A one-place queue: one long generation runs, one waits, and the flood is told "busy"."""
    from gradio_client.utils import QueueError, Status

    with AppServer(tmp_path, cache_dir=tiny_cache, queue_max_size=1, default_concurrency=1) as srv:
        clients = [Client(srv.url, verbose=False, download_files=str(tmp_path / f"d{i}"))
                   for i in range(8)]
        # warm the model so the long job starts denoising at once
        clients[0].predict(*job_args("generate", media, 1)[1], api_name="/generate")
        # 4 s at low is 7 passes of 200 steps: far longer than the flood below takes
        long_args = (MODEL, "a long one", 4, "low", 2, "", 200, None, "segments")
        running = clients[0].submit(*long_args, api_name="/generate")
        _wait_for(lambda: running.status().code in (Status.PROCESSING, Status.PROGRESS),
                  "the long job to start")
        waiting = clients[1].submit(*job_args("generate", media, 3)[1], api_name="/generate")
        _wait_for(lambda: waiting.status().code == Status.IN_QUEUE, "the second job to queue")
        flood = []
        for i, (client, kind) in enumerate(zip(clients[2:], SCHEDULE)):  # every kind of job
            api, args = job_args(kind, media, 10 + i)
            flood.append(client.submit(*args, api_name=api))
        refused = []
        for job in flood:
            try:
                job.result(timeout=60)  # a refusal is quick; a hang fails here
            except QueueError as exc:
                refused.append(str(exc))
        assert not running.done() and waiting.status().code == Status.IN_QUEUE  # still full
        assert len(refused) == len(flood) and all("Queue is full" in m for m in refused), refused
        # the flood hurt no one: the running job can be cancelled, the queued one still finishes
        # Cancel is a queue=False event: the browser posts it to /run/ (the Python client would
        # join the full queue and be refused), so it works even while the queue is full
        r = httpx.post(f"{srv.url}gradio_api/run/cancel_generate", timeout=30,
                       json={"data": [], "session_hash": clients[0].session_hash})
        assert r.status_code == 200, r.text
        with pytest.raises(AppError, match="(?i)cancel"):
            running.result(timeout=JOB_TIMEOUT_S)
        assert waiting.result(timeout=JOB_TIMEOUT_S)[2]["seed"] == 3
        # and once the queue drains, new jobs are served again
        out = clients[2].predict(*job_args("generate", media, 4)[1], api_name="/generate")
        assert out[2]["seed"] == 4
        assert srv.proc.poll() is None
        for c in clients:
            c.close()


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
