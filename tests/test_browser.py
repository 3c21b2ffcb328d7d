"""The app as people meet it: headless Chromium, driven by Playwright, against the real server."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.browser_support import LAUNCH_ARGS, CHROMIUM, AppServer, require_chromium, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server():
    require_chromium()
    with tempfile.TemporaryDirectory() as tmp, AppServer(Path(tmp)) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS,
            viewport={"width": 1280, "height": 900})
        yield ctx
        ctx.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    page.goto(server.url, wait_until="domcontentloaded")
    page.wait_for_selector("#oc-gauges .oc-gauge", timeout=60_000)
    yield page
    page.close()


def test_app_loads_tabs_render_and_gauges_tick(page):
    tabs = [t.inner_text().strip() for t in page.get_by_role("tab").all()]
    assert "System" in tabs
    for label in tabs:
        page.get_by_role("tab", name=label).click()
    page.get_by_role("tab", name="System").click()
    page.get_by_text("Every required check passed").wait_for(timeout=60_000)
    first = page.locator(".oc-gauge-time").inner_text()
    page.wait_for_function(
        "t => document.querySelector('.oc-gauge-time')?.innerText !== t", arg=first,
        timeout=15_000)
    gauges = page.locator("#oc-gauges .oc-gauge")
    assert gauges.count() >= 4
    assert page.locator('[data-gauge="RAM"] .oc-gauge-value').inner_text().endswith("GB")
    shot(page, "01-app-loads")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from tests.video_fixtures import MediaFactory

    return MediaFactory(tmp_path_factory.mktemp("browser-media"))


def _upload(page, path):
    page.get_by_role("tab", name="Inspect").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_text("Click to Upload").first.click()
    chooser.value.set_files(str(path))


def test_inspect_upload_shows_properties_thumbnails_and_playable_preview(page, clips):
    _upload(page, clips.get("long.mp4"))
    page.get_by_text("Frame rate").first.wait_for(timeout=90_000)
    body = page.locator("body").inner_text()
    assert "25" in body and "160" in body  # fps and width of the lavfi clip
    page.wait_for_function("document.querySelectorAll('video').length > 0", timeout=30_000)
    duration = page.wait_for_function(
        "() => { const v = document.querySelector('video'); "
        "return v && v.readyState >= 1 && v.duration > 0 ? v.duration : false }", timeout=30_000)
    assert duration.json_value() > 9
    assert page.locator("img").count() >= 12  # the thumbnail strip
    shot(page, "02-inspect-upload")


def test_inspect_text_file_named_mp4_gets_a_friendly_toast_and_page_keeps_working(page, clips):
    _upload(page, clips.get("text.mp4"))
    toast = page.get_by_text("looks like a text file")
    toast.first.wait_for(timeout=60_000)
    assert "Traceback" not in page.locator("body").inner_text()
    shot(page, "03-inspect-text-file")
    page.get_by_role("button", name="Clear").first.click()
    _upload(page, clips.get("mp4_h264.mp4"))  # the next upload still works
    page.get_by_text("Frame rate").first.wait_for(timeout=90_000)


def test_models_load_tiny_pipeline_shows_loaded_with_device(page):
    page.get_by_role("tab", name="Models").click()
    dropdown = page.get_by_label("Model card")
    dropdown.click()
    page.get_by_role("option", name="tiny-random-t2v").first.click()
    page.get_by_role("button", name="Load / switch").click()
    page.get_by_text("tiny-random-t2v on cpu").first.wait_for(timeout=180_000)
    assert "random weights" in page.locator("body").inner_text()
    shot(page, "04-models-load-tiny")


def test_diagnostics_shows_the_failed_upload(page):
    # runs after the text-file upload in this module's server
    page.get_by_text("Diagnostics").first.click()
    page.locator("#oc-diag-refresh").click()
    page.get_by_text("InvalidVideoError").first.wait_for(timeout=30_000)
    report = page.locator("#oc-diag-report").inner_text()
    assert "inspect" in report and "text file" in report
    shot(page, "07-diagnostics")


def _generate_one_second(page, prompt: str) -> None:
    page.get_by_role("tab", name="Generate").click()
    page.get_by_label("Prompt").fill(prompt)
    duration = page.get_by_label("number input for Duration (seconds)")
    if duration.count() == 0:
        duration = page.locator("input[type=number]").first
    duration.fill("1")
    duration.press("Enter")
    page.get_by_role("button", name="Generate", exact=True).click()


def _wait_for_playing_video(page) -> float:
    handle = page.wait_for_function(
        "() => { const vs = [...document.querySelectorAll('video')].filter(v => v.src); "
        "const v = vs[0]; return v && v.readyState >= 1 && v.duration > 0 ? v.duration : false }",
        timeout=240_000)
    page.evaluate("() => { const v = [...document.querySelectorAll('video')].find(v => v.src);"
                  " v.muted = true; return v.play(); }")
    page.wait_for_function(
        "() => [...document.querySelectorAll('video')].some(v => v.src && v.currentTime > 0)",
        timeout=30_000)
    return handle.json_value()


def test_generate_one_second_shows_progress_plays_and_lands_in_history(page):
    _generate_one_second(page, "a red kite over a stormy sea")
    page.wait_for_selector(".progress-text, .eta-bar, .meta-text-center, .meta-text",
                           timeout=60_000)
    duration = _wait_for_playing_video(page)
    assert 0.5 < duration < 3
    shot(page, "05-generate")
    history = page.locator(".block", has=page.get_by_text("History", exact=True))
    history.locator("img, video").first.wait_for(timeout=30_000)
    assert "seed" in page.locator("body").inner_text().lower()


@pytest.fixture(scope="module")
def oom_server():
    require_chromium()
    with tempfile.TemporaryDirectory() as tmp, AppServer(Path(tmp),
                                                         inject_oom="generate.decode") as srv:
        yield srv


def test_generate_with_injected_decode_oom_names_the_rung_and_still_delivers(browser, oom_server):
    page = browser.new_page()
    try:
        page.goto(oom_server.url, wait_until="domcontentloaded")
        page.wait_for_selector("#oc-gauges .oc-gauge", timeout=60_000)
        _generate_one_second(page, "a lighthouse at dusk")
        page.get_by_text("VAE tiling").first.wait_for(timeout=240_000)
        _wait_for_playing_video(page)
        shot(page, "06-generate-injected-oom")
    finally:
        page.close()
