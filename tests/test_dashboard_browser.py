"""The dashboard in a real browser: ``weir dashboard`` serves the app on 127.0.0.1 over the
session's demo lake (``tests/support/dashboard.py``), and headless Chromium from Debian's
``chromium`` package (``/usr/bin/chromium``, installed by ``make setup``; Playwright only
drives it, its own browser download is never used) opens the Analytics page with the
browser's timezone set to Asia/Tokyo, sees that timezone in use, picks a plan in the filter
by clicking, and sees the figures change, with no error element on the page. Screenshots
before and after the click are kept in ``test-artifacts/``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
#: As root, without a sandbox; without background networking (this machine's closed network
#: refuses it, many connections at a time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason="Debian's chromium is not installed (make setup installs it: apt-get install chromium)",
)


@pytest.fixture(scope="module")
def dashboard_url(dashboard_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard-server") / "dashboard.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["WEIR_STATE_DIR"] = str(dashboard_lake)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "weir.cli", "dashboard", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_for_port(port, process, timeout=60)
        except (RuntimeError, TimeoutError) as e:
            raise AssertionError(f"weir dashboard did not start: {log.read_text()[-3000:]}") from e
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


def test_a_filter_clicked_in_chromium_changes_the_analytics_page(dashboard_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(
                timezone_id="Asia/Tokyo", viewport={"width": 1400, "height": 1600}
            )
            page = context.new_page()
            page.goto(f"{dashboard_url}/analytics", wait_until="domcontentloaded")
            # The browser's timezone reached the app and is the one in use.
            expect(page.get_by_text("Times are shown in Asia/Tokyo")).to_be_visible(timeout=60_000)
            events = page.get_by_test_id("stMetric").filter(has_text="Events").first
            expect(events).to_be_visible(timeout=60_000)
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
            before = events.get_by_test_id("stMetricValue").inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard-analytics.png"), full_page=True)

            # Pick a plan by clicking the filter, then its option.
            plan = page.get_by_test_id("stMultiSelect").filter(has_text="Plan")
            plan.click()
            page.get_by_role("option", name="enterprise").click()
            page.keyboard.press("Escape")
            expect(events.get_by_test_id("stMetricValue")).not_to_have_text(before, timeout=60_000)
            after = events.get_by_test_id("stMetricValue").inner_text()
            count = lambda text: int(re.sub(r"[^0-9]", "", text))  # noqa: E731
            assert 0 < count(after) < count(before), (before, after)
            expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
            page.screenshot(
                path=str(ARTIFACTS / "dashboard-analytics-filtered.png"), full_page=True
            )

            assert page.get_by_test_id("stException").count() == 0
            assert page.locator("[data-testid='stAlertContentError']").count() == 0
        finally:
            browser.close()
