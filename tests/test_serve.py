"""`clapdex serve`: the HTTP API on a real uvicorn on 127.0.0.1, over SQLite and PostgreSQL
catalogs, called as a team's tools would call it."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from libraries import index_into
from postgres import fresh_database
from sounds import build_library, sox_tone
from test_browser import free_port

from search.config import load_settings
from server.api import RECHECK_SECONDS


def clapdex(*args: str, home, catalog: str | None = None, weights=None) -> subprocess.CompletedProcess:
    options = ["--home", str(home)] + (["--catalog", catalog] if catalog else []) + \
        (["--weights", str(weights)] if weights else [])
    return subprocess.run([sys.executable, "-m", "clapdex", *options, *args], capture_output=True, text=True,
                          timeout=300)


class Api:
    def __init__(self, url: str, keys: dict[str, str], library: dict, home, catalog: str | None = None):
        self.url, self.keys, self.library, self.home, self.catalog = url, keys, library, home, catalog

    def call(self, method: str, route: str, key: str | None = "reader", body: bytes | None = None,
             **headers) -> tuple[int, bytes, dict]:
        if key is not None:
            headers["Authorization"] = f"Bearer {self.keys.get(key, key)}"
        request = urllib.request.Request(self.url + route, data=body, method=method,
                                         headers={name.replace("_", "-"): value for name, value in headers.items()})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers

    def get(self, route: str, key: str | None = "reader", **headers):
        return self.call("GET", route, key, **headers)

    def json(self, route: str, key: str | None = "reader"):
        status, body, headers = self.get(route, key)
        assert status == 200, body
        return json.loads(body), headers


def answers(api: Api) -> bool:
    try:
        return api.get("/v1/status")[0] == 200
    except OSError:  # not listening yet
        return False


def quoted(path) -> str:
    return urllib.parse.quote(str(path), safe="")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request, tmp_path_factory, tiny_weights, tiny_encoder):
    folder = tmp_path_factory.mktemp("served-library") / "sounds"
    library = build_library(folder)
    outside = sox_tone(tmp_path_factory.mktemp("outside") / "secret.wav", 1)
    (folder / "escape.wav").symlink_to(outside)  # a link out of the root
    library["outside"] = outside
    home = tmp_path_factory.mktemp("served-home")
    catalog = fresh_database() if request.param == "postgresql" else None
    index_into(load_settings(home, catalog=catalog), [folder], tiny_encoder)
    keys = {}
    for name, role in (("reader", "read"), ("admin", "admin"), ("burst", "read"), ("gone", "read")):
        made = clapdex("keys", "add", name, "--role", role, home=home, catalog=catalog)
        assert made.returncode == 0, made.stderr
        keys[name] = made.stdout.strip()
    assert clapdex("keys", "revoke", "gone", home=home, catalog=catalog).returncode == 0
    port = free_port()
    command = [sys.executable, "-m", "clapdex", "--home", str(home), "--weights", str(tiny_weights), "--device", "cpu",
               *(["--catalog", catalog] if catalog else []), "serve", "--port", str(port),
               "--rate-limit", "600", "--cors-origin", "http://tools.example"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    served = Api(url, keys, library, home, catalog)
    try:
        deadline = time.monotonic() + 120
        while not answers(served):
            if server.poll() is not None:
                raise RuntimeError(f"clapdex serve exited with {server.returncode}: {server.stderr.read()}")
            assert time.monotonic() < deadline, "clapdex serve did not answer"
            time.sleep(0.5)
        yield served
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_search_by_text_returns_hits_with_where_they_matched(api):
    hits, headers = api.json("/v1/search?q=a+steady+tone&top=3")

    assert len(hits) == 3 and int(headers["X-Total-Count"]) >= 3
    assert {"path", "score", "start", "end", "name", "duration", "sample_rate", "relevance", "match"} <= set(hits[0])
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_search_takes_the_command_lines_filters_and_keywords(api):
    hits, _ = api.json("/v1/search?q=tone&format=m4a&format=mp3")
    assert {hit["format"] for hit in hits} == {"m4a", "mp3"}
    hits, _ = api.json("/v1/search?keywords=beep,+chirp")
    assert sorted(hit["name"] for hit in hits) == ["beep.mp3", "chirp.m4a"]
    status, body, _ = api.get("/v1/search?q=tone&sort=loudest")
    assert status == 400 and "unknown sort" in json.loads(body)["detail"].lower()
    status, body, _ = api.get("/v1/search?q=tone&top=0")
    assert (status, json.loads(body)["detail"]) == (422, "Top: input should be greater than or equal to 1")



@pytest.mark.parametrize(("query", "status", "detail"), [
    ("q=tone&colour=red", 422, "Colour: extra inputs are not permitted"),
    ("q=tone&rate=fast", 422, "Rate.0: input should be a valid integer, unable to parse string as an integer"),
    ("q=tone&max_duration=0", 422, "Max_duration: input should be greater than 0"),
    ("q=tone&keyword_weight=2", 422, "Keyword_weight: input should be less than or equal to 1"),
    ("q=tone&top=", 422, "Top: input should be a valid integer, unable to parse string as an integer"),
    ("top=3", 400, "Give q (a description), keywords or a filter"),
])
def test_each_search_parameter_is_checked_with_a_sentence(api, query, status, detail):
    answer, body, _ = api.get(f"/v1/search?{query}")
    assert (answer, json.loads(body)["detail"]) == (status, detail)


def test_a_repeated_search_parameter_takes_its_last_value(api):
    hits, _ = api.json("/v1/search?q=tone&top=1&top=2")
    assert len(hits) == 2

def test_post_search_with_an_uploaded_clip_finds_its_window(api):
    boundary = uuid.uuid4().hex
    clip = api.library["tone"].read_bytes()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode() + clip + \
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"top\"\r\n\r\n3\r\n--{boundary}--\r\n".encode()
    status, answer, _ = api.call("POST", "/v1/search", body=body,
                                 Content_Type=f"multipart/form-data; boundary={boundary}")

    hits = json.loads(answer)
    assert status == 200 and len(hits) == 3
    by_name = {hit["name"]: hit for hit in hits}
    assert by_name["long.wav"]["score"] == pytest.approx(1.0, abs=1e-3)
    assert (by_name["long.wav"]["start"], by_name["long.wav"]["end"]) == (7.0, 14.0)


def test_post_search_with_a_json_query(api):
    body = json.dumps({"q": f"{api.library['tone']} - steady", "top": 2}).encode()
    status, answer, _ = api.call("POST", "/v1/search", body=body, Content_Type="application/json")
    assert status == 200 and len(json.loads(answer)) == 2
    status, answer, _ = api.call("POST", "/v1/search", body=b'{"q": "rain", "colour": "red"}',
                                 Content_Type="application/json")
    assert status == 400 and "colour" in json.loads(answer)["detail"].lower()


def test_uploads_are_bounded(api):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n").encode() \
        + b"\0" * (21 * 2**20) + f"\r\n--{boundary}--\r\n".encode()
    status, answer, _ = api.call("POST", "/v1/search", body=body,
                                 Content_Type=f"multipart/form-data; boundary={boundary}")
    assert status == 413 and "at most 20 MB" in json.loads(answer)["detail"]


def test_similar_to_a_file_and_to_a_range_of_it(api):
    hits, _ = api.json(f"/v1/similar?path={quoted(api.library['long'])}&start=7&end=14&top=2")
    assert hits[0]["name"] == "tone.wav" and hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert api.get(f"/v1/similar?path={quoted(api.library['long'])}&start=7")[0] == 400


def test_audio_is_streamed_with_range_requests_and_regions_as_wav(api):
    route = f"/v1/audio?path={quoted(api.library['stereo'])}"
    status, whole, headers = api.get(route)
    assert status == 200 and headers["Content-Type"] == "audio/flac" and headers["Accept-Ranges"] == "bytes"
    status, part, headers = api.get(route, Range="bytes=10-99")
    assert status == 206 and part == whole[10:100] and headers["Content-Range"] == f"bytes 10-99/{len(whole)}"
    status, region, headers = api.get(route + "&start=1&end=2")
    assert status == 200 and headers["Content-Type"] == "audio/wav" and region[:4] == b"RIFF"



@pytest.mark.parametrize("name", ["tone", "long"])  # read whole by the route (670 kB), streamed (1.9 MB)
def test_a_whole_file_is_sent_as_on_disk_with_the_headers_of_a_range_answer(api, name):
    on_disk = api.library[name].read_bytes()
    route = f"/v1/audio?path={quoted(api.library[name])}"
    status, whole, headers = api.get(route)
    assert status == 200 and whole == on_disk and int(headers["Content-Length"]) == len(on_disk)
    assert headers["Content-Type"] == "audio/wav" and headers["Accept-Ranges"] == "bytes"
    status, part, ranged = api.get(route, Range="bytes=0-9")
    assert status == 206 and part == on_disk[:10]
    for header in ("ETag", "Last-Modified", "Cache-Control"):
        assert headers[header] and headers[header] == ranged[header], header

@pytest.mark.parametrize("path", [
    "{root}/../{outside_name}", "{outside}", "/etc/passwd", "{root}/escape.wav", "{root}/%2e%2e/{outside_name}",
    "{root}/notes.wav", "{root}/readme.txt",
])
def test_nothing_outside_the_indexed_files_is_served(api, path):
    root = api.library["tone"].parent
    outside = api.library["outside"]
    asked = path.format(root=root, outside=outside, outside_name=f"{outside.parent.name}/{outside.name}")
    for route in (f"/v1/audio?path={quoted(asked)}", f"/v1/similar?path={quoted(asked)}"):
        status, body, _ = api.get(route)
        assert status == 404, (route, body)
        assert json.loads(body)["detail"] in ("no such file in this library", "No such file in this library")


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("not-a-key", 401), ("gone", 401)])
def test_missing_wrong_and_revoked_keys_get_401(api, key, status):
    answer, body, headers = api.get("/v1/search?q=tone", key=key)
    assert answer == status and headers["WWW-Authenticate"] == "Bearer" and json.loads(body)["detail"]


def test_a_read_key_cannot_index_and_an_admin_key_can(api):
    status, body, _ = api.call("POST", "/v1/index", key="reader")
    assert status == 403 and "admin" in json.loads(body)["detail"]
    status, body, _ = api.call("POST", "/v1/index", key="admin", body=b'{"paths": ["/etc"]}',
                               Content_Type="application/json")
    assert status == 400 and "not under the library roots" in json.loads(body)["detail"]

    status, body, _ = api.call("POST", "/v1/index", key="admin")
    assert status == 202, body
    deadline = time.monotonic() + 240
    while True:
        progress, _ = api.json("/v1/index", key="admin")
        if not progress["running"]:
            break
        assert time.monotonic() < deadline
        time.sleep(1)
    assert progress["exit_status"] == 0 and progress["progress"]["phase"] == "finished"


def test_status_and_duplicates(api):
    status, _ = api.json("/v1/status")
    assert status["indexed"] >= 7 and status["windows"] > 7 and "msclap-2023" in status["model"]
    assert len(status["errors"]) == 3
    found, _ = api.json("/v1/duplicates?threshold=0.999")
    # Near duplicates are what the library keeps, and it keeps none yet: said, not computed.
    assert set(found) == {"exact", "near", "near_current", "near_note"}
    assert found["near"] is None and not found["near_current"] and "`clapdex duplicates`" in found["near_note"]
    assert clapdex("duplicates", "--json", home=api.home, catalog=api.catalog).returncode == 0
    found, _ = api.json("/v1/duplicates?threshold=0.999")
    assert found["near_current"] and found["near_note"] is None and isinstance(found["near"], list)
    assert api.get("/v1/duplicates?threshold=2")[0] == 422
    assert api.get("/v1/duplicates?threshold=0.5")[0] == 422


def test_a_key_sending_too_fast_gets_429_with_retry_after(api):
    answers = [api.get("/v1/status", key="burst") for _ in range(120)]
    limited = [headers for status, _, headers in answers if status == 429]
    assert limited and int(limited[0]["Retry-After"]) >= 1
    assert api.get("/v1/status", key="reader")[0] == 200  # other keys are not held back


def test_cors_answers_only_the_configured_origins(api):
    allowed = api.call("OPTIONS", "/v1/search", key=None, Origin="http://tools.example",
                       Access_Control_Request_Method="GET", Access_Control_Request_Headers="authorization")
    assert allowed[0] == 200 and allowed[2]["Access-Control-Allow-Origin"] == "http://tools.example"
    other = api.call("OPTIONS", "/v1/search", key=None, Origin="http://elsewhere.example",
                     Access_Control_Request_Method="GET")
    assert other[0] == 400 and "Access-Control-Allow-Origin" not in other[2]


def test_openapi_docs_describe_the_versioned_routes(api):
    status, body, _ = api.get("/openapi.json", key=None)
    routes = set(json.loads(body)["paths"])
    assert status == 200 and {"/v1/search", "/v1/similar", "/v1/audio", "/v1/status", "/v1/duplicates",
                              "/v1/index"} <= routes
    assert api.get("/docs", key=None)[0] == 200


@pytest.mark.parametrize("verb", [["serve"], ["ui", "--host", "0.0.0.0"], ["ui", "--sign-in"]])
def test_servers_that_would_be_open_refuse_to_start_without_keys(tmp_path, tiny_weights, tiny_encoder, verb):
    folder = tmp_path / "sounds"
    folder.mkdir()
    sox_tone(folder / "a.wav", 1)
    index_into(load_settings(tmp_path / "home"), [folder], tiny_encoder)
    done = clapdex(*verb, "--port", str(free_port()), home=tmp_path / "home", weights=tiny_weights)

    assert done.returncode == 3 and "clapdex keys add" in done.stderr and len(done.stderr.splitlines()) == 1


def started_server(home, weights, *options: str, cores: list[int] | None = None) -> tuple[subprocess.Popen, str]:
    """``clapdex serve`` with ``options``, on ``cores`` only if given."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "clapdex", "--home", str(home), "--weights", str(weights),
                               "--device", "cpu", "serve", "--port", str(port), *options],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)
    return server, f"http://127.0.0.1:{port}"


def answering(api: Api, server: subprocess.Popen, url: str) -> Api:
    """``api``'s keys and library on the ``server`` started at ``url``, once it answers."""
    served = Api(url, api.keys, api.library, api.home)
    deadline = time.monotonic() + 120
    while not answers(served):
        assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
        time.sleep(0.5)
    return served


def children_of(pid: int) -> set[int]:
    # Linux lists children per thread of the parent: the workers are started from a worker thread.
    children = set()
    for thread in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{thread}/children") as listed:
            children.update(int(child) for child in listed.read().split())
    return children


def search_processes_of(pid: int) -> set[int]:
    return {child for child in children_of(pid) if "multiprocessing.spawn" in open(f"/proc/{child}/cmdline").read()}


# Where the catalog is changes nothing here: over SQLite only.
@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_search_processes_answer_as_the_server_itself_and_end_with_it(api, tiny_weights):
    answers_by = {}
    for workers in ("0", "2"):
        server, url = started_server(api.home, tiny_weights, "--workers", workers)
        try:
            served = answering(api, server, url)
            answers_by[workers] = [served.json(f"/v1/search?q={words}&top=5")[0] for words in ("tone", "noise")]
            answers_by[workers].append(served.json(f"/v1/similar?path={quoted(api.library['tone'])}&top=3")[0])
            workers_started = search_processes_of(server.pid)
            assert len(workers_started) == int(workers)
            if workers_started:  # one killed: that search is refused, new workers take over
                killed = min(workers_started)
                os.kill(killed, signal.SIGKILL)
                time.sleep(1)  # for the pool to notice
                status, body, headers = served.get("/v1/search?q=tone&top=5")
                assert (status, headers["Retry-After"]) == (503, "5"), body
                assert served.json("/v1/search?q=tone&top=5")[0] == answers_by[workers][0]
                workers_started = search_processes_of(server.pid)
                assert 1 <= len(workers_started) <= int(workers) and killed not in workers_started  # started as needed
        finally:
            server.kill()  # no goodbye: the workers must notice by themselves
            server.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{child}") and "Z" not in open(f"/proc/{child}/stat").read().split()[2]
                  for child in workers_started):
            assert time.monotonic() < deadline, "a search process outlived its server"
            time.sleep(0.2)
    for in_process, in_workers in zip(answers_by["0"], answers_by["2"]):
        assert [hit["path"] for hit in in_process] == [hit["path"] for hit in in_workers]
        assert [hit["score"] for hit in in_process] == pytest.approx([hit["score"] for hit in in_workers], abs=1e-5)


def test_a_worker_runs_its_batch_one_by_one_only_where_the_workers_have_every_core(monkeypatch):
    from server.searching import BATCH, search_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    assert (search_threads(2), search_threads(3), search_threads(1)) == (1, 1, BATCH)


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_searches_sent_at_once_get_what_each_gets_alone(api, tiny_weights):
    """Requests that arrive together are searched as a batch by a worker: one after another
    (2 workers on 2 cores) or on threads (1 worker on 2 cores); each gets its own answer."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    if len(cores) < 2:
        pytest.skip("needs 2 cores")
    routes = [f"/v1/search?q={words}&top=3" for words in ("tone", "noise", "a+steady+tone", "beep", "chirp")] + \
        [f"/v1/similar?path={quoted(api.library[name])}&top=3" for name in ("tone", "long", "stereo")]
    for workers in ("2", "1"):
        server, url = started_server(api.home, tiny_weights, "--workers", workers, cores=cores)
        try:
            served = answering(api, server, url)
            alone = [served.json(route)[0] for route in routes]
            with concurrent.futures.ThreadPoolExecutor(3 * len(routes)) as clients:
                together = list(clients.map(lambda route: served.json(route)[0], routes * 3))
        finally:
            server.terminate()
            server.wait(timeout=30)
        for route, first, again in zip(routes * 3, alone * 3, together):
            assert [hit["path"] for hit in again] == [hit["path"] for hit in first], (workers, route)
            assert [hit["score"] for hit in again] == pytest.approx([hit["score"] for hit in first], abs=1e-3)


def test_a_key_revoked_while_the_server_runs_is_refused_within_seconds(api):
    name = f"brief-{uuid.uuid4().hex[:8]}"
    key = clapdex("keys", "add", name, "--role", "read", home=api.home, catalog=api.catalog).stdout.strip()
    assert api.get("/v1/status", key=key)[0] == 200  # checked, and remembered for RECHECK_SECONDS
    assert clapdex("keys", "revoke", name, home=api.home, catalog=api.catalog).returncode == 0
    time.sleep(RECHECK_SECONDS + 0.5)
    assert api.get("/v1/status", key=key)[0] == 401


def test_a_page_of_hits_is_sent_as_starlette_writes_json():
    """Search workers write the hits' JSON themselves (``page_of``): byte for byte what
    Starlette's JSONResponse wrote when the server did it (UTF-8 left as it is, compact), and
    a score that is not a number is still refused, never sent as NaN."""
    from starlette.responses import JSONResponse

    from search.engine import Hit, Results
    from server.searching import page_of

    hit = Hit(path="/sons/pluie/pluie_été.wav", score=0.42, start=0.0, end=5.0, duration=7.5, file_id=3, window_id=9,
              name="pluie_été.wav", folder="/sons/pluie", root="/sons", size=1200, mtime=1.7e9, sample_rate=48000,
              channels=2, codec="pcm_s24le", format="wav", bit_depth=24, tags=("pluie", "toit"),
              suggested=(("RAINGen", 0.8),), suggested_tags=(("source", "rain", 0.7),), relevance=0.6, match="fair")
    page = page_of(Results([hit, hit], total=37, page=0, page_size=2))
    assert page.body == JSONResponse([hit.to_dict(), hit.to_dict()]).body and page.total == 37
    assert "été".encode() in page.body
    with pytest.raises(ValueError):
        page_of(Results([Hit(**{**hit.__dict__, "score": float("nan")})], total=1, page=0, page_size=1))
