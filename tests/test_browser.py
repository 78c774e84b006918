"""The real page in a real browser: Debian's Chromium, driven by Playwright, against
`clapdex ui` serving a small real library on 127.0.0.1. Screenshots go to test-artifacts/."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from sounds import build_library
from libraries import index_into

from search.config import load_settings

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Chromium here has no network beyond loopback: keep it from trying.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"clapdex ui exited with {server.returncode}: {server.stderr.read()}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"clapdex ui did not answer at {url} within {seconds} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_weights, tiny_encoder):
    library = build_library(tmp_path_factory.mktemp("browser-library") / "sounds")
    home = tmp_path_factory.mktemp("browser-home")
    index_into(load_settings(home), [library["tone"].parent], tiny_encoder)
    port = free_port()
    command = [
        sys.executable, "-m", "clapdex", "--home", str(home), "--weights", str(tiny_weights), "--device", "cpu",
        "ui", "--host", "127.0.0.1", "--port", str(port),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server)
        yield url, library
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def search_page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.goto(url)
    expect(page.get_by_text("Describe a sound, or drop in an example")).to_be_visible(timeout=60_000)
    return page


def run_search(page, text: str = "") -> None:
    page.get_by_label("Describe the sound", exact=True).fill(text)
    page.get_by_role("button", name="Search", exact=True).click()


def test_text_query_shows_results_with_players_and_waveforms(served, browser):
    url, _ = served
    page = search_page(browser, url)
    run_search(page, "a steady electronic tone")

    expect(page.get_by_test_id("stAudio")).to_have_count(7, timeout=60_000)
    expect(page.get_by_text("best match").first).to_be_visible()
    expect(page.get_by_role("img")).to_have_count(7)  # a waveform per hit
    page.screenshot(path=ARTIFACTS / "text-query.png", full_page=True)
    assert page.get_by_text("Traceback").count() == 0


def test_query_by_example_finds_the_source_window(served, browser):
    url, library = served
    page = search_page(browser, url)
    page.locator("input[type=file]").set_input_files(library["tone"])
    expect(page.get_by_text("tone.wav").first).to_be_visible(timeout=30_000)  # the upload is listed
    page.get_by_role("button", name="Search", exact=True).click()

    expect(page.get_by_test_id("stAudio")).to_have_count(7, timeout=60_000)
    expect(page.get_by_text("best match 0:07.0–0:14.0 of 0:20.0")).to_be_visible()
    # Players point at audio the server actually delivers.
    source = page.get_by_test_id("stAudio").first.get_attribute("src")
    assert source and page.request.get(source if source.startswith("http") else url + source).ok
    page.screenshot(path=ARTIFACTS / "example-query.png", full_page=True)


def test_more_like_this_and_a_format_filter(served, browser):
    url, _ = served
    page = search_page(browser, url)
    run_search(page, "a steady electronic tone")
    expect(page.get_by_test_id("stAudio")).to_have_count(7, timeout=60_000)

    card = page.locator(".st-key-hit-1, [class*='st-key-hit-']").filter(has_text="tone.wav").first
    card.get_by_role("button", name="More like this").click()
    expect(page.get_by_text("Sounds like tone.wav")).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stAudio")).to_have_count(6)
    page.get_by_role("tab", name="Search").click()
    page.screenshot(path=ARTIFACTS / "more-like-this.png", full_page=True)

    page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect").filter(has_text="Format").click()
    page.get_by_role("option", name="FLAC").click()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("stAudio")).to_have_count(1, timeout=60_000)
    expect(page.get_by_text("stereo.flac")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "filtered.png", full_page=True)


def test_library_view(served, browser):
    url, _ = served
    page = search_page(browser, url)
    page.get_by_role("tab", name="Library").click()

    expect(page.get_by_text("Files indexed")).to_be_visible()
    expect(page.get_by_text("Files that could not be read")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "library.png", full_page=True)
