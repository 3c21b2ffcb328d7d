"""The README's copy-paste promises: two set-up commands, and an API example that really runs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_gives_exactly_the_two_setup_commands_and_ci_uses_the_test_one():
    setup = README[README.index("## Run it"):README.index("## Configuration")]
    blocks = re.findall(r"```bash\n(.*?)```", setup, re.S)
    assert [b.strip() for b in blocks] == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_spaces_front_matter_matches_the_pinned_gradio():
    front = README.split("---")[1]
    pinned = re.search(r"^gradio(?:\[\w+\])?==([\d.]+)$", (ROOT / "requirements.txt").read_text(),
                       re.M).group(1)
    for key in ("title:", "emoji:", "sdk: gradio", "app_file: app.py", "python_version:",
                "suggested_hardware:", "license:"):
        assert key in front
    assert f"sdk_version: {pinned}" in front


@pytest.mark.slow
def test_api_example_runs_against_a_local_app(tmp_path, monkeypatch):
    from tests.browser_support import AppServer
    from tests.video_fixtures import MediaFactory

    code = re.search(r"<!-- api-example -->\n```python\n(.*?)```", README, re.S).group(1)
    clip = MediaFactory(tmp_path / "media").get("mp4_h264.mp4")
    monkeypatch.chdir(clip.parent)
    clip.rename(clip.parent / "clip.mp4")
    with AppServer(tmp_path) as server:
        code = code.replace("http://127.0.0.1:7860/", server.url)
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    props, sidecar = scope["props"], scope["sidecar"]
    assert props["fps"] == 25 and props["width"] == 160
    assert sidecar["model"]["name"] == "tiny-random-t2v" and sidecar["seed_was_random"] is True
    assert Path(scope["video"]).stat().st_size > 0
