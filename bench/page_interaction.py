"""What a page interaction costs the person at the browser: from a click to a page of results
drawn (rows, waveforms loaded), in real Chromium against `clapdex ui`, for this page and for
the page of an older commit, side by side in one run on one library.

    python bench/page_interaction.py --home ~/.clapdex-demo --old ccbb7a7 --repeat 20

Interactions: a new text search (a different query each time, so none is cached), Next, and
"More like this" on the first hit. Prints p50/p95 in ms per interaction and page, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

REPOSITORY = Path(__file__).resolve().parent.parent
QUERIES = ["kick drum", "snare", "bell", "bass", "cymbal", "piano", "glitch", "ambient drone", "hi hat", "tabla",
           "vinyl crackle", "guitar", "choir", "laser", "woosh", "clap", "noise", "loop", "synth lead", "percussion"]
VISIBLE = 10  # hits on a page, as both pages show by default
SHADOW = "document.querySelector('[data-testid=stBidiComponentIsolated]')?.shadowRoot"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def python_for(source: Path, scratch: Path) -> str:
    """A Python that imports clapdex from ``source`` and everything else from this one's packages.

    PYTHONPATH is not enough: the editable install's import hook maps clapdex's packages to
    this checkout ahead of it. A venv whose .pth names ``source`` and our site-packages as
    plain paths never runs that hook.
    """
    if source == REPOSITORY:
        return sys.executable
    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    ours = next(Path(path) for path in sys.path if path.endswith("site-packages"))
    theirs = next((venv / "lib").glob("python3*/site-packages"))
    (theirs / "clapdex-old.pth").write_text(f"{source}\n{ours}\n")
    return str(venv / "bin" / "python")


def serve(home: str, python: str, source: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # Run from the checkout itself: `python -m` puts the working directory first on the path.
    server = subprocess.Popen([python, "-m", "clapdex", "--home", home, "ui", "--port", str(port)], cwd=source,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"no page at {url}")


class Page:
    heading = "Sounds like {}"

    def drawn(self, page, text: str) -> None:
        raise NotImplementedError

    def search(self, page, text: str) -> None:
        page.get_by_label("Describe the sound", exact=True).fill(text)
        page.get_by_role("button", name="Search", exact=True).click()
        self.drawn(page, self.heading.format(text))


class NewPage(Page):
    """This commit's page: one list component (ui/hitlist.js)."""

    heading = "Sounds like “{}”"

    def drawn(self, page, what: str) -> None:
        page.wait_for_function(
            f"""([what, count]) => {{ const root = {SHADOW}; if (!root) return false;
                const head = root.querySelector('.head'); const images = [...root.querySelectorAll('.wave img')];
                return head && head.textContent.includes(what) && images.length === count
                       && images.every(img => img.complete && img.naturalWidth > 0); }}""",
            arg=[what, VISIBLE], timeout=120_000)

    def next(self, page) -> None:
        page.locator(".pager .page", has_text="Next").click()
        self.drawn(page, "page 2 of")

    def more(self, page) -> None:
        name = page.locator(".hitlist .row .name").first.inner_text()
        page.locator(".hitlist .row").first.get_by_role("button", name="More like this").click()
        self.drawn(page, self.heading.format(name))


class OldPage(Page):
    """The page before the result list (one Streamlit card per hit)."""

    def drawn(self, page, text: str) -> None:
        page.wait_for_function(
            """([text, count]) => document.body.innerText.includes(text)
                && document.querySelectorAll('[data-testid=stAudio]').length === count
                && [...document.querySelectorAll('[data-testid=stImage] img')].every(i => i.complete)""",
            arg=[text, VISIBLE], timeout=120_000)

    def next(self, page) -> None:
        page.get_by_role("button", name="Next").click()
        self.drawn(page, "page 2 of")

    def more(self, page) -> None:
        heading = page.locator("[data-testid=stMarkdownContainer] strong").filter(has_text="1. ").first.inner_text()
        page.get_by_role("button", name="More like this").first.click()
        self.drawn(page, self.heading.format(heading.split(". ", 1)[1]))


def measure(browser, url: str, driver, repeat: int) -> dict[str, list[float]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    expect(page.get_by_text("Describe a sound, or drop in an example")).to_be_visible(timeout=120_000)
    driver.search(page, "warm up")  # the first query loads the model: not an interaction to time
    times: dict[str, list[float]] = {"search": [], "next": [], "more like this": []}
    for number in range(repeat):
        for name, step in (("search", lambda: driver.search(page, QUERIES[number % len(QUERIES)] + f" {number}")),
                           ("next", lambda: driver.next(page)), ("more like this", lambda: driver.more(page))):
            started = time.perf_counter()
            step()
            times[name].append(1000 * (time.perf_counter() - started))
    page.close()
    return times


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100)[round(share * 100) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--old", default="ccbb7a7", help="the commit whose page to compare with")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright:
        old = Path(scratch) / "old"
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(old), args.old],
                       check=True, capture_output=True)
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        try:
            for label, source, driver in (("this page", REPOSITORY, NewPage()), (f"page at {args.old}", old, OldPage())):
                print(f"measuring {label}", file=sys.stderr, flush=True)
                server, url = serve(os.path.expanduser(args.home), python_for(source, Path(scratch)), source)
                try:
                    results[label] = measure(browser, url, driver, args.repeat)
                finally:
                    server.terminate()
                    server.wait(timeout=30)
        finally:
            browser.close()
            subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(old)], check=False)
    ours, theirs = results["this page"], results[f"page at {args.old}"]
    print(f"{'interaction':<16}{'this p50':>10}{'this p95':>10}{'old p50':>10}{'old p95':>10}{'old/this p50':>14}")
    for name in ours:
        mine, old_times = statistics.median(ours[name]), statistics.median(theirs[name])
        print(f"{name:<16}{mine:>10.0f}{percentile(ours[name], 0.95):>10.0f}{old_times:>10.0f}"
              f"{percentile(theirs[name], 0.95):>10.0f}{old_times / mine:>14.1f}")


if __name__ == "__main__":
    main()
