"""The launched app, as a stranger on the network would probe it over plain HTTP."""
from __future__ import annotations

import importlib
import sys

import httpx
import pytest


@pytest.fixture
def app_module(monkeypatch, tmp_path):
    """Import app.py as Spaces would (module level builds ``demo``), with settings in tmp_path."""
    monkeypatch.setenv("OPUSCLIP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPUSCLIP_UPLOAD_MAX_MB", "1")
    monkeypatch.setattr(sys, "argv", ["pytest"])
    sys.modules.pop("app", None)
    module = importlib.import_module("app")
    yield module
    module.demo.close()
    sys.modules.pop("app", None)


def _launch(module, port, **settings_update):
    settings = module.settings.model_copy(update={"host": "127.0.0.1", "port": port,
                                                  **settings_update})
    module.serve(module.demo, settings, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{port}"


def test_module_exposes_demo_and_lockdown_settings(app_module):
    kw = app_module.launch_kwargs(app_module.settings)
    assert app_module.demo is not None
    assert kw["show_error"] is False and kw["strict_cors"] is True
    assert kw["max_file_size"] == 2**20
    assert kw["allowed_paths"] == [str(app_module.settings.outputs.resolve())]
    assert str(app_module.CONFIG_DIR) in kw["blocked_paths"]


def test_file_routes_refuse_host_files_configs_and_logs(app_module, free_port):
    base = _launch(app_module, free_port)
    log_file = app_module.settings.logs / "opusclip.log"
    assert log_file.exists()
    for target in ("/etc/passwd", str(app_module.CONFIG_DIR / "app.yaml"), str(log_file.resolve())):
        r = httpx.get(f"{base}/gradio_api/file={target}", timeout=10)
        assert r.status_code in (403, 404), (target, r.status_code)
        assert "root:" not in r.text and "upload_max_mb" not in r.text


def test_upload_over_the_cap_is_refused(app_module, free_port):
    base = _launch(app_module, free_port)
    small = httpx.post(f"{base}/gradio_api/upload", files={"files": ("a.bin", b"x" * 1000)},
                       timeout=30)
    assert small.status_code == 200
    big = httpx.post(f"{base}/gradio_api/upload",
                     files={"files": ("big.bin", b"x" * (2 * 2**20))}, timeout=30)
    assert big.status_code == 413


def test_auth_refuses_without_and_with_bad_credentials(app_module, free_port):
    base = _launch(app_module, free_port, auth="ann:s3cret")
    assert httpx.get(f"{base}/config", timeout=10).status_code == 401
    bad = httpx.post(f"{base}/login", data={"username": "ann", "password": "nope"}, timeout=10)
    assert bad.status_code in (400, 401)
    with httpx.Client(base_url=base, timeout=10) as client:
        good = client.post("/login", data={"username": "ann", "password": "s3cret"})
        assert good.status_code == 200
        assert client.get("/config").status_code == 200


def test_share_failure_is_reported_and_local_serving_continues(app_module, free_port, monkeypatch,
                                                               caplog):
    from gradio import networking

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(networking, "setup_tunnel", offline)
    base = _launch(app_module, free_port, share=True, auth=None)
    messages = [r.getMessage() for r in caplog.records]
    assert any("anyone with the link" in m for m in messages)
    assert any("Could not create a public share link" in m for m in messages)
    assert httpx.get(f"{base}/", timeout=10).status_code == 200


def test_mcp_tool_list_names_inspect_and_generate(app_module, free_port):
    base = _launch(app_module, free_port, mcp=True)
    r = httpx.get(f"{base}/gradio_api/mcp/schema", timeout=30)
    assert r.status_code == 200
    tools = r.json()
    names = {t["name"] for t in (tools if isinstance(tools, list) else tools.get("tools", []))}
    assert not any(n.startswith("_lambda") for n in names), names
    assert any(n.endswith("inspect") for n in names), names
    assert any(n.endswith("generate") for n in names), names


def test_worker_children_do_not_rebuild_the_app(tmp_path):
    """Probes run in forkserver children, which re-import the main script: app.py must not
    build a second app (and read the wrong settings) in each of them."""
    from gradio_client import Client, handle_file

    from tests.browser_support import AppServer
    from tests.video_fixtures import MediaFactory

    clip = MediaFactory(tmp_path / "media").get("mp4_h264.mp4")
    with AppServer(tmp_path) as server:
        client = Client(server.url, verbose=False)
        for _ in range(2):
            result = client.predict(handle_file(str(clip)), "", 4, api_name="/inspect")
            assert "Frame rate" in result[1]
        log = server.log.read_text()
    assert log.count("data in ") == 1, log[-3000:]
