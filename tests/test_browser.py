"""The real page in a real browser, as a sound designer uses it: Debian's Chromium, driven by
Playwright at 1400x1000, against `clapdex ui` serving a real library indexed with the shipped
model (clapdex-compact) on 127.0.0.1. Screenshots go to test-artifacts/."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from libraries import index_into
from playwright.sync_api import expect, sync_playwright
from sounds import esc10_clips, sox_tone

from search.config import load_settings

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Chromium here has no network beyond loopback: keep it from trying. Fake audio devices let
# the page's player run without a sound card.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]
VIEWPORT = {"width": 1400, "height": 1000}
# The page's one player lives on the result list's shadow root (ui/hitlist.js).
PLAYER = "document.querySelector('[data-testid=stBidiComponentIsolated]').shadowRoot.__clapdex.audio"


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


def build_sound_library(folder: Path) -> dict[str, Path]:
    """Four real recordings (a dog, rain, waves, a baby), one-shots from 10 ms to 2 s in
    folders, a 30-s take, an AIFF, and a byte-for-byte copy: 21 files."""
    files: dict[str, Path] = {}
    for clip in esc10_clips(4):
        target = folder / "field" / clip.parent.name.split(" - ")[1].lower().replace(" ", "_") / clip.name
        target.parent.mkdir(parents=True, exist_ok=True)
        files[target.parent.name] = Path(shutil.copyfile(clip, target))
    shots = folder / "one-shots"
    shots.mkdir()
    files["click"] = sox_tone(shots / "click_44ms.wav", 0.044, tone="sine 2000 fade 0 0.044 0.03")
    files["tick"] = sox_tone(shots / "tick_10ms.wav", 0.010, tone="square 3000")
    for number in range(12):
        kind = ("sine", "square", "sawtooth", "triangle")[number % 4]
        files[f"tone{number}"] = sox_tone(shots / f"{kind}_{number:02d}.wav", 0.2 + 0.15 * number,
                                          tone=f"{kind} {200 + 150 * number}")
    takes = folder / "takes"
    takes.mkdir()
    files["take"] = sox_tone(takes / "long_take.flac", 30, tone="pinknoise")
    files["aiff"] = sox_tone(takes / "hum.aiff", 2, tone="sine 60")
    files["copy"] = Path(shutil.copyfile(files["dog_bark"], folder / "field" / "dog_bark_copy.ogg"))
    return files


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    library = tmp_path_factory.mktemp("browser-library") / "sfx"
    files = build_sound_library(library)
    home = tmp_path_factory.mktemp("browser-home")
    index_into(load_settings(home, model="clapdex-compact", device="cpu"), [library])
    with page_server(home) as url:
        yield url, files


@contextlib.contextmanager
def started(command: list[str], stderr=subprocess.PIPE) -> Iterator[subprocess.Popen]:
    """A server process, ended when the block ends."""
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    try:
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def page_server(home: Path, *options: str, port: int | None = None) -> Iterator[str]:
    """`clapdex ui` for ``home`` on 127.0.0.1 (a free port unless given), healthy: its URL."""
    port = port or free_port()
    with started([sys.executable, "-m", "clapdex", "--home", str(home), "--device", "cpu", "ui",
                  "--host", "127.0.0.1", "--port", str(port), *options]) as server:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, server)
        yield url


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(served, browser):
    url, _ = served
    context = browser.new_context(viewport=VIEWPORT, permissions=["clipboard-read", "clipboard-write"])
    opened = context.new_page()
    opened.goto(url)
    expect(opened.get_by_text("Describe a sound, or drop in an example")).to_be_visible(timeout=60_000)
    yield opened
    assert opened.get_by_text("Traceback").count() == 0
    context.close()


def search(page, text: str = "", keywords: str | None = None) -> None:
    page.get_by_label("Describe the sound", exact=True).fill(text)
    if keywords is not None:
        page.get_by_label("Keywords", exact=True).fill(keywords)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator(".hitlist .head")).to_be_visible(timeout=60_000)


def head(page):
    return page.locator(".hitlist .head")


def in_viewport(locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"]


def rows_in_viewport(page) -> int:
    return sum(in_viewport(row) for row in page.locator(".hitlist .row").all())


def choose_view(page, name: str) -> None:
    page.get_by_test_id("stButtonGroup").get_by_role("radio", name=name, exact=True).click()


def set_page_size(page, size: int) -> None:
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").filter(has_text="Per page").click()
    page.get_by_role("option", name=str(size), exact=True).click()


def test_a_dense_list_shows_at_least_eight_hits_on_one_screen(page):
    search(page, "rain falling")

    expect(page.locator(".hitlist .row")).to_have_count(10)
    expect(head(page)).to_contain_text("Sounds like “rain falling”")
    assert rows_in_viewport(page) >= 8
    first = page.locator(".hitlist .row").first
    expect(first.locator(".folder")).to_have_text(re.compile(r"^sfx/"))  # below its root, not absolute
    expect(first.locator(".level")).to_have_text("strong")
    # The rain recording is on the first screen (the 30-s pink noise take may rank above it: it sounds like rain).
    expect(page.locator(".hitlist .row .folder").filter(has_text=re.compile(r"^sfx/field/rain$"))).not_to_have_count(0)
    expect(page.locator(".hitlist .notice")).to_have_count(0)
    # Every thumbnail is a picture the server actually drew.
    page.wait_for_function("() => [...document.querySelector('[data-testid=stBidiComponentIsolated]').shadowRoot"
                           ".querySelectorAll('.wave img')].every(img => img.complete && img.naturalWidth === 200)")
    page.screenshot(path=ARTIFACTS / "dense-list.png")


def test_next_shows_the_top_of_the_new_page(page):
    set_page_size(page, 20)
    search(page, "a short electronic beep")
    page.locator(".pager .page", has_text="Next").scroll_into_view_if_needed()
    assert not in_viewport(head(page))
    page.locator(".pager .page", has_text="Next").click()

    expect(head(page)).to_contain_text("page 2 of 2")
    expect(page.locator(".hitlist .row").first.locator(".rank")).to_have_text("21")
    page.wait_for_timeout(300)
    assert in_viewport(head(page))
    page.screenshot(path=ARTIFACTS / "after-next.png")


def test_more_like_this_on_hit_nine_starts_a_new_search_in_view(page):
    search(page, "a short electronic beep")
    ninth = page.locator(".hitlist .row").nth(8)
    name = ninth.locator(".name").inner_text()
    page.locator(".pager").scroll_into_view_if_needed()
    ninth.get_by_role("button", name="More like this").click()

    expect(head(page)).to_contain_text(f"Sounds like “{name}”")
    expect(head(page)).to_contain_text("page 1 of")
    page.wait_for_timeout(300)
    assert in_viewport(head(page))
    # The query box shows the query being run, and the file itself is left out.
    assert page.get_by_label("Describe the sound", exact=True).input_value().endswith(name)
    expect(page.locator(".hitlist .row .name", has_text=name)).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "more-like-this.png")


def test_a_filter_change_goes_back_to_page_one(page):
    set_page_size(page, 5)
    search(page, "a short electronic beep")
    page.locator(".pager .page", has_text="Next").click()
    expect(head(page)).to_contain_text("page 2 of")

    page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect").filter(has_text="Format").click()
    page.get_by_role("option", name="WAV").click()
    page.keyboard.press("Escape")

    expect(head(page)).to_contain_text("page 1 of")
    expect(head(page)).to_contain_text("WAV")
    expect(page.locator(".hitlist .row").first.locator(".rank")).to_have_text("1")
    for name in page.locator(".hitlist .row .name").all_inner_texts():
        assert name.endswith(".wav")
    page.screenshot(path=ARTIFACTS / "filter-page-one.png")


def test_a_44_ms_clip_has_a_readable_row_and_plays(page):
    search(page, keywords="click_44ms")
    row = page.locator(".hitlist .row").filter(has_text="click_44ms.wav")

    expect(row.locator(".duration")).to_have_text("44 ms")
    expect(row.locator(".region")).to_have_text("whole file")
    row.get_by_role("button", name="Play click_44ms.wav").click()
    page.wait_for_function(f"() => {PLAYER}.ended && {PLAYER}.error === null", timeout=10_000)
    assert page.evaluate(f"() => {PLAYER}.duration") == pytest.approx(0.044, abs=0.005)
    page.screenshot(path=ARTIFACTS / "one-shot-44ms.png")


def test_one_sound_plays_at_a_time_and_the_keyboard_auditions(page):
    search(page, "rain falling")
    rows = page.locator(".hitlist .row")
    rows.nth(0).get_by_role("button", name="Play").click()
    expect(rows.nth(0)).to_have_class("row selected playing", timeout=10_000)
    rows.nth(1).get_by_role("button", name="Play").click()
    expect(rows.nth(1)).to_have_class("row selected playing", timeout=10_000)
    expect(rows.nth(0)).to_have_class("row")

    page.keyboard.press("ArrowDown")  # the next row, playing
    expect(rows.nth(2)).to_have_class("row selected playing", timeout=10_000)
    page.keyboard.press(" ")
    expect(rows.nth(2)).to_have_class("row selected")
    assert page.locator(".hitlist .row.playing").count() == 0


def test_nonsense_gets_the_weak_match_notice(page):
    search(page, "asdkjh qwe zzz")

    expect(page.locator(".hitlist .notice")).to_contain_text("Nothing in this library matches this well")
    expect(page.locator(".hitlist .row").first.locator(".level")).to_have_text("weak")
    page.screenshot(path=ARTIFACTS / "weak-match.png")


def test_an_upload_is_a_removable_chip(page, served):
    _, files = served
    page.get_by_role("button", name="Search by example").click()
    page.locator("input[type=file]").set_input_files(files["rain"])
    chip = page.get_by_role("button", name=files["rain"].name, exact=True)
    expect(chip).to_be_visible(timeout=60_000)
    expect(head(page)).to_contain_text(f"Sounds like “{files['rain'].name}”")
    expect(page.locator(".hitlist .row").first.locator(".folder")).to_have_text("sfx/field/rain")
    page.keyboard.press("Escape")

    search(page, "water")  # the chip stays, visibly part of the search
    expect(head(page)).to_contain_text(f"Sounds like “water + {files['rain'].name}”")
    page.screenshot(path=ARTIFACTS / "upload-chip.png")
    chip.click()
    expect(head(page)).to_contain_text("Sounds like “water”", timeout=60_000)
    expect(page.get_by_role("button", name=files["rain"].name, exact=True)).to_have_count(0)


def test_details_open_a_spectrogram_on_demand(page):
    search(page, "ocean waves")
    first = page.locator(".hitlist .entry").first
    expect(first.locator(".spectrogram")).to_have_count(0)
    first.get_by_role("button", name="Info").click()

    page.wait_for_function("() => { const img = document.querySelector('[data-testid=stBidiComponentIsolated]')"
                           ".shadowRoot.querySelector('.spectrogram'); return img && img.complete && "
                           "img.naturalWidth > 0; }")
    expect(first.locator(".more-info")).to_contain_text("kHz")
    page.screenshot(path=ARTIFACTS / "details.png")


def test_duplicates_are_grouped_relative_and_playable(page, served):
    url, files = served
    choose_view(page, "Duplicates")
    group = page.locator(".hitlist .group").first
    expect(group).to_contain_text("2 files · identical", timeout=60_000)
    rows = page.locator(".hitlist .row")
    expect(rows.locator(".folder").first).to_have_text("sfx/field/dog_bark")
    sources = page.evaluate("() => [...document.querySelector('[data-testid=stBidiComponentIsolated]').shadowRoot"
                            ".querySelectorAll('.download')].map(a => a.getAttribute('href'))")
    assert sources and all(page.request.get(url + source).ok for source in sources)

    rows.first.get_by_role("button", name="Keep this one").click()
    expect(page.get_by_text("Keeping 1-100032-A.ogg")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("stCode")).to_contain_text(str(files["copy"]))
    assert page.evaluate("() => navigator.clipboard.readText()") == str(files["copy"])
    page.screenshot(path=ARTIFACTS / "duplicates.png", full_page=True)


def test_library_view(page):
    choose_view(page, "Library")

    expect(page.get_by_text("Files indexed")).to_be_visible()
    assert page.get_by_test_id("stSidebar").count() == 0  # search filters only where they apply
    page.screenshot(path=ARTIFACTS / "library.png", full_page=True)


def get(url: str, **headers):
    """(status, body, headers) of a GET; the headers read case-insensitively."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


def test_media_routes_serve_library_files_only(served):
    url, _ = served
    status, body, headers = get(f"{url}/clapdex/audio/1", Range="bytes=0-99")
    assert status == 206 and len(body) == 100 and headers["Content-Type"].startswith("audio/")
    status, whole, whole_headers = get(f"{url}/clapdex/audio/1")  # a small file: read by the route, one body
    assert status == 200 and whole[:100] == body and int(whole_headers["Content-Length"]) == len(whole)
    assert whole_headers["ETag"] == headers["ETag"] and whole_headers["Content-Type"] == headers["Content-Type"]
    status, body, headers = get(f"{url}/clapdex/audio/1?start=0&end=0.5&download=1")
    assert status == 200 and body[:4] == b"RIFF" and "attachment" in headers["Content-Disposition"]
    assert get(f"{url}/clapdex/audio/99999")[0] == 404
    assert get(f"{url}/clapdex/audio/1?start=abc")[0] == 400
    status, body, _ = get(f"{url}/clapdex/audio/..%2F..%2Fetc%2Fpasswd")
    assert status in (400, 404) and b"root:" not in body
    status, body, headers = get(f"{url}/clapdex/waveform/1.png?start=0&end=1")
    assert status == 200 and body[:4] == b"\x89PNG"


def test_an_aiff_is_played_as_wav(served):
    url, _ = served
    status, body, headers = get(f"{url}/clapdex/audio/{_id_of(url, 'hum.aiff')}")
    assert status == 200 and headers["Content-Type"] == "audio/wav" and body[:4] == b"RIFF"


def _id_of(url: str, name: str) -> int:
    for file_id in range(1, 40):
        status, _, headers = get(f"{url}/clapdex/audio/{file_id}?start=0&end=0.1&download=1")
        if status == 200 and name.rsplit(".", 1)[0] in headers.get("Content-Disposition", ""):
            return file_id
    raise AssertionError(f"{name} is not served")


@pytest.fixture(scope="module")
def signed(served):
    """The same library's page with signing in, on loopback (`--sign-in`), and a key for it."""
    _, files = served
    home = Path(files["take"]).parents[3] / "browser-home0"
    made = subprocess.run([sys.executable, "-m", "clapdex", "--home", str(home), "keys", "add", "visitor", "--role",
                           "read"], capture_output=True, text=True, check=True)
    with page_server(home, "--sign-in") as url:
        yield url, made.stdout.strip(), home


def sign_out(page, visitor: str) -> None:
    """Through the menu that names the visitor and their role."""
    page.get_by_role("button", name=visitor).click()
    page.get_by_role("button", name="Sign out").click()


def test_signing_in_with_a_key_before_anything_is_shown(signed, browser):
    url, key, home = signed
    assert get(f"{url}/clapdex/audio/1")[0] == 401  # the media too, not only the page
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    expect(page.get_by_label("API key")).to_be_visible(timeout=30_000)
    assert page.get_by_text("Describe a sound").count() == 0
    page.get_by_label("API key").fill("cdx_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("That key is not valid")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "sign-in.png")

    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Describe a sound, or drop in an example")).to_be_visible(timeout=60_000)
    search(page, "rain falling")
    expect(page.locator(".hitlist .row")).to_have_count(10)
    page.wait_for_function("() => [...document.querySelector('[data-testid=stBidiComponentIsolated]').shadowRoot"
                           ".querySelectorAll('.wave img')].every(img => img.complete && img.naturalWidth === 200)")
    sign_out(page, "visitor · read")
    expect(page.get_by_label("API key")).to_be_visible(timeout=30_000)
    assert page.request.get(f"{url}/clapdex/audio/1").status == 401  # the session went with the cookie
    page.close()

    subprocess.run([sys.executable, "-m", "clapdex", "--home", str(home), "keys", "revoke", "visitor"], check=True,
                   capture_output=True)
    again = browser.new_page(viewport=VIEWPORT)
    again.goto(url + "/clapdex/sign-in")
    again.get_by_label("API key").fill(key)
    again.get_by_role("button", name="Sign in").click()
    expect(again.get_by_text("That key is not valid")).to_be_visible()
    again.close()


@pytest.fixture(scope="module")
def provider():
    """A real OpenID Connect provider on 127.0.0.1 (oidc-provider-mock), with two users: its URL."""
    port = free_port()
    users = [{"sub": "ana", "email": "ana@studio.test", "email_verified": True, "name": "Ana"},
             {"sub": "bob", "email": "bob@studio.test", "email_verified": True, "name": "Bob"}]
    command = [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port)]
    for user in users:
        command += ["--user-claims", json.dumps(user)]
    url = f"http://127.0.0.1:{port}"
    with started(command, stderr=subprocess.DEVNULL) as server:  # it logs every request
        deadline = time.monotonic() + 60
        while not _answers(url + "/.well-known/openid-configuration"):
            assert server.poll() is None and time.monotonic() < deadline, "the OpenID provider did not start"
            time.sleep(0.3)
        yield url


def _answers(url: str) -> bool:
    try:
        return get(url)[0] == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def provider_signed(served, provider, tmp_path_factory):
    """The same sounds' page on loopback with `--sign-in`, through the provider: a home of its own
    with an [auth] section, Ana listed as admin, and no API key at all."""
    _, files = served
    home = tmp_path_factory.mktemp("provider-home")
    index_into(load_settings(home, model="clapdex-compact", device="cpu"), [files["take"].parents[1]])
    (home / "config.toml").write_text('admins = ["ana@studio.test"]\n')
    port = free_port()
    (home / ".streamlit").mkdir()
    (home / ".streamlit" / "secrets.toml").write_text(
        f'[auth]\nredirect_uri = "http://127.0.0.1:{port}/oauth2callback"\ncookie_secret = "{secrets.token_hex(32)}"\n'
        f'client_id = "clapdex"\nclient_secret = "{secrets.token_hex(16)}"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n')
    with page_server(home, "--sign-in", port=port) as url:
        yield url


def sign_in_through_provider(page, user: str) -> None:
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name=user, exact=True).click()  # the provider's own form
    expect(page.get_by_text("Describe a sound, or drop in an example")).to_be_visible(timeout=60_000)


def test_signing_in_through_an_openid_provider(provider_signed, browser):
    url = provider_signed
    assert get(f"{url}/clapdex/audio/1")[0] == 401
    assert get(f"{url}/clapdex/audio/1", Cookie="_streamlit_user=forged.by.hand")[0] == 401
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)
    assert page.get_by_text("Describe a sound").count() == 0
    page.screenshot(path=ARTIFACTS / "sign-in-provider.png")

    sign_in_through_provider(page, "ana")
    expect(page.get_by_role("button", name="ana@studio.test · admin")).to_be_visible()  # listed in admins
    search(page, "rain falling")
    expect(page.locator(".hitlist .row")).to_have_count(10)
    page.wait_for_function("() => [...document.querySelector('[data-testid=stBidiComponentIsolated]').shadowRoot"
                           ".querySelectorAll('.wave img')].every(img => img.complete && img.naturalWidth === 200)")
    signed_in = page.request.get(f"{url}/clapdex/audio/1", headers={"Range": "bytes=0-99"})
    assert signed_in.status == 206 and len(signed_in.body()) == 100
    page.get_by_role("button", name="ana@studio.test · admin").click()
    page.screenshot(path=ARTIFACTS / "signed-in-provider.png")
    page.keyboard.press("Escape")

    sign_out(page, "ana@studio.test · admin")
    page.get_by_role("button", name="End session").click()  # the provider's own, then back to the page
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)
    assert page.request.get(f"{url}/clapdex/audio/1").status == 401

    sign_in_through_provider(page, "bob")
    expect(page.get_by_role("button", name="bob@studio.test · read")).to_be_visible()
    page.close()


def test_a_suggested_category_chip_is_accepted_with_a_click(tmp_path, browser):
    from indexer.tagging import tag_library
    from search.library import Library

    library = tmp_path / "sfx"
    library.mkdir()
    for clip in esc10_clips(2):
        shutil.copyfile(clip, library / clip.name)
    settings = load_settings(tmp_path / "home", model="clapdex-compact", device="cpu")
    index_into(settings, [library])
    with Library(settings) as opened:
        tag_library(opened)
    with page_server(tmp_path / "home") as url:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.goto(url)
        expect(page.get_by_text("Describe a sound, or drop in an example")).to_be_visible(timeout=60_000)
        search(page, "a dog barking")
        first = page.locator(".hitlist .row").first
        chips = first.locator(".suggestion")
        expect(chips).to_have_count(3)
        second = chips.nth(1)
        cat_id = second.inner_text().split()[0]
        expect(second).to_have_attribute("title", re.compile(r"^Suggested \(\d+% likely\): .+Click to accept$"))
        second.click()
        accepted = page.locator(".hitlist .row").first.locator(".suggestion.accepted")
        expect(accepted).to_have_count(1, timeout=30_000)
        expect(accepted).to_have_text(re.compile(rf"^{cat_id} "))
        page.screenshot(path=str(ARTIFACTS / "suggestion-accepted.png"))
        assert page.get_by_text("Traceback").count() == 0
        context.close()
    with Library(settings) as opened:
        found = opened.catalog.suggestions_of(record.id for record in opened.catalog.files())
    assert [entry.accepted for entry in found.values()].count(cat_id) == 1
