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
