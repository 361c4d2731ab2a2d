"""The try-it page (``GET /``) in a real headless Chromium, against a running ``georay serve``.

The browser is the distribution's Chromium (Debian package ``chromium``; ``make test`` installs
it), driven by Playwright through ``executable_path``: Playwright's own browser download is
never used. The server is the real CLI in a subprocess, with auth on and a small body limit so
the page must downscale a large photo; it is stopped with SIGTERM, as ``docker stop`` would.

A random-init tiny model answers gibberish, so the model here is the tiny Qwen2-VL fine-tuned
for a few seconds to answer one fixed place whatever the image; then the country, the city,
the marker and the cell on the page can be checked against what the API answers.

Set ``GEORAY_SCREENSHOT_DIR`` to save the README's screenshot (``try-page.png``) there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image
from support import france_model, georay_argv

pytestmark = pytest.mark.slow

KEY = "page-test-key-7f3a9c"
KEY_ENV = "GEORAY_PAGE_TEST_KEY"
ANSWER = dict(country="France", city="Paris", reasons="Slate roofs and limestone walls.")
LIMIT = 200_000  # the server's max_request_bytes: the large photo must be downscaled to fit
LYON = (45.7640, 4.8357)  # where the photos "were taken" (EXIF GPS)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Playwright adds --headless and a fresh --user-data-dir; these keep Chromium off Google hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = os.environ.get("GEORAY_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), "")
    # CI installs it (`make test`), so a missing browser is a broken setup, not a reason to skip.
    assert path, (
        "no Chromium found (set GEORAY_CHROMIUM, or `apt-get install chromium`, which "
        "`make test` runs as root): the page's browser test cannot run"
    )
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _photo(path: Path, size: tuple[int, int], gps: tuple[float, float] | None) -> Path:
    """A synthetic French street view as a JPEG, with EXIF GPS when ``gps`` is given."""
    from georay.synth.draw import STYLES, draw_street

    france = next(s for s in STYLES if s.code == "FR")
    pixels, _ = draw_street(france, 0, *size, np.random.default_rng(3))
    exif = Image.Exif()
    if gps:
        lat, lon = gps
        dms = lambda v: (float(int(v)), float(int(v * 60 % 60)), round(v * 3600 % 60, 4))  # noqa: E731
        exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: dms(abs(lat)),
                        3: "E" if lon >= 0 else "W", 4: dms(abs(lon))}  # fmt: skip
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, exif=exif)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """A small photo (fits the limit), a large one (does not), a text file posing as one, and
    an iPhone-style HEIC (rotated, with GPS) that Chromium cannot decode: it goes as it is."""
    from georay.synth.formats import encode_photo

    root = tmp_path_factory.mktemp("photos")
    fake = root / "holiday.jpg"
    fake.write_text("these are holiday notes, not a photo\n")
    small = _photo(root / "small.jpg", (480, 360), LYON)
    heic = root / "IMG_0001.HEIC"
    with Image.open(small) as image:
        heic.write_bytes(encode_photo(np.asarray(image), "HEIF", gps=LYON, orientation=6))
    return {
        "small": small,
        "large": _photo(root / "large.jpg", (1600, 1200), LYON),
        "fake": fake,
        "heic": heic,
    }


@pytest.fixture(scope="module")
def scratch():
    """A short folder for the model and the server's files (the page shows the model path, and
    Ray's Unix socket paths must stay under 107 bytes); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="georay-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(scratch):
    """``georay serve`` in a subprocess (its own local Ray); yields its URL and log folders."""
    model, ray_tmp, log = scratch / "tiny-qwen2vl-france", scratch / "ray", scratch / "serve.log"
    steps, seconds = france_model(model, ANSWER)
    print(f"\nfine-tuned the tiny model in {steps} steps, {seconds:.1f} s")
    port = _free_port()
    env = {**os.environ, KEY_ENV: KEY, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)  # a private Ray, as on a laptop
    cmd = georay_argv("serve", "--model", str(model), "--port", str(port), "--api-key-env",
                      KEY_ENV, "--max-request-bytes", str(LIMIT), "--max-new-tokens", "64",
                      "--cpus-per-replica", "0.5")  # fmt: skip
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"georay serve did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        print(f"georay serve answered /healthz after {time.monotonic() - started:.1f} s")
        yield {"url": url, "logs": [log, ray_tmp]}
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=90)
        with contextlib.suppress(ProcessLookupError):  # what is left of its group (raylet, ...)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # SIGTERM is how Kubernetes and `docker stop` end it: a clean stop is exit status 0.
    assert proc.returncode == 0, (
        f"georay serve exited {proc.returncode}:\n{log.read_text()[-3000:]}"
    )


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api  # in the dev extra, which CI installs

    executable = _chromium()
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Recorder:
    """Every request the page makes; anything not for the test server is refused."""

    def __init__(self, page, origin: str):
        self.requests, self.foreign = [], []
        self.origin = origin

        def route(r):
            if urlsplit(r.request.url).netloc == urlsplit(self.origin).netloc:
                r.continue_()
            else:
                self.foreign.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("request", lambda request: self.requests.append(request))


def _api_answer(url: str, photo: Path) -> dict:
    response = httpx.post(
        url + "/v1/geolocate",
        files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
        headers={"X-API-Key": KEY},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _upload(page, photo: Path) -> str:
    """Choose ``photo`` in the page's file input; wait for an answer or an error."""
    page.set_input_files("#file", str(photo))
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)")
    return page.get_attribute("body", "data-state")


def _drop(page, photo: Path, media_type: str) -> str:
    """Drop ``photo`` on the drop zone, as a user dragging a file in would."""
    data = list(photo.read_bytes())
    transfer = page.evaluate_handle(
        """([data, name, type]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(data)], name, { type }));
            return dt;
        }""",
        [data, photo.name, media_type],
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)")
    return page.get_attribute("body", "data-state")


def test_page_locates_a_photo_shows_errors_and_keeps_the_key_out_of_urls(
    browser, server, photos, tmp_path
):
    from georay.geo.distance import haversine_km

    url = server["url"]
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    recorder = Recorder(page, url)
    started = time.monotonic()
    page.goto(url + "/")
    page.wait_for_function("document.body.dataset.state === 'ready'")
    load_s = time.monotonic() - started
    assert page.is_visible("#key-row"), "auth is on: the page must ask for the key"
    assert page.is_hidden("#url-row"), "URL fetching is off: no URL field"
    assert page.locator("#countries path").count() > 200
    print(f"page ready (settings + world map drawn) in {load_s:.2f} s")

    # Errors are the API's own 4xx text, on the page.
    page.fill("#key", KEY)
    assert _drop(page, photos["fake"], "image/jpeg") == "error"
    assert "400" in page.text_content("#error") and "not an image" in page.text_content("#error")
    page.fill("#key", KEY + "-wrong")
    assert _upload(page, photos["small"]) == "error"
    assert "401" in page.text_content("#error") and "API key" in page.text_content("#error")
    assert page.is_hidden("#answer")

    # A photo within the limits: the page shows exactly what the API answers for it.
    page.fill("#key", KEY)
    expected = _api_answer(url, photos["small"])
    assert (expected["country"], expected["city"]) == ("France", "Paris"), expected
    assert _upload(page, photos["small"]) == "done", page.text_content("#error")
    assert json.loads(page.text_content("#raw")) == expected
    assert page.text_content("#country") == "France (FR)"
    assert page.text_content("#city") == "Paris"
    assert page.text_content("#reasons") == ANSWER["reasons"]
    assert page.locator('#countries path[data-code="FR"].hit').count() == 1
    marker = page.locator("#pred-marker")
    cx, cy = float(marker.get_attribute("cx")), float(marker.get_attribute("cy"))
    assert (cx, cy) == pytest.approx((10 * expected["lon"], -10 * expected["lat"]))
    cell = [tuple(map(float, p.split(","))) for p in
            page.get_attribute("#cell", "points").split()]  # fmt: skip
    assert len(cell) == 6  # the predicted H3 cell: a hexagon around the marker
    assert min(x for x, _ in cell) < cx < max(x for x, _ in cell)
    assert min(y for _, y in cell) < cy < max(y for _, y in cell)
    km = haversine_km(*LYON, expected["lat"], expected["lon"])
    assert f"{round(float(km)):,} km from the prediction" in page.text_content("#exif")
    assert page.locator("#exif-marker").count() == 1
    _confidence_shown(page, expected)  # the API's confidence and candidates, or "not given"

    # A photo over the body limit is downscaled in the browser, and keeps its EXIF GPS.
    assert photos["large"].stat().st_size > LIMIT
    assert _upload(page, photos["large"]) == "done", page.text_content("#error")
    assert "Downscaled 1600×1200" in page.text_content("#status")
    big = json.loads(page.text_content("#raw"))
    assert big["country"] == "France"
    assert (big["exif_lat"], big["exif_lon"]) == pytest.approx(LYON, abs=1e-3)
    shot = Path(os.environ.get("GEORAY_SCREENSHOT_DIR") or tmp_path) / "try-page.png"
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as image:
        assert image.width >= 1280

    posts = [r for r in recorder.requests if r.method == "POST"]
    assert len(posts) == 4
    assert all(len(r.post_data_buffer) <= LIMIT for r in posts)
    assert all(r.headers.get("x-api-key") for r in posts)
    assert not any(KEY in r.url for r in recorder.requests)
    assert recorder.foreign == [], "the page fetched from outside the server"

    # Without auth (and with URL fetching on) the key field goes and the URL field comes.
    settings = httpx.get(url + "/v1/config").json()
    page.route("**/v1/config", lambda r: r.fulfill(
        json={**settings, "auth": False, "allow_url_fetch": True}))  # fmt: skip
    page.reload()
    page.wait_for_function("document.body.dataset.state === 'ready'")
    assert page.is_hidden("#key-row") and page.is_visible("#url-row")
    page.close()


def _confidence_shown(page, answer: dict) -> None:
    """The page shows ``answer``'s confidence, lists its candidates and marks the first 3 that
    have a point on the map (and says so, with no marker, when the answer carries none)."""
    confidence = page.text_content("#confidence")
    if answer.get("country_confidence") is None:
        assert confidence == "not given by this model"
    else:
        assert confidence.startswith(f"{100 * answer['country_confidence']:.1f}% that the country")
    assert ("check this answer by hand" in confidence) == bool(answer.get("abstained"))
    cands = answer.get("candidates") or []
    items = page.locator("#candidates li")
    assert items.count() == len(cands)
    for i, c in enumerate(cands):
        assert items.nth(i).text_content().endswith(f" · {100 * c['probability']:.1f}%")
    placed = [(i, c) for i, c in enumerate(cands[:3]) if c["lat"] is not None]
    assert page.locator("#overlay circle.cand").count() == len(placed)
    for i, c in placed:
        dot = page.locator(f"#cand-marker-{i + 1}")
        xy = float(dot.get_attribute("cx")), float(dot.get_attribute("cy"))
        assert xy == pytest.approx((10 * c["lon"], -10 * c["lat"]))


def test_confidence_and_the_top_3_candidates_on_the_map(browser, server, photos):
    """An answer with a confidence and four candidates (the API's own answer with them set, so
    the page is checked whatever the served model gives): the confidence in words, the list,
    three numbered markers; then an answer with none: no marker, and nothing broken."""
    extra = {
        "country_confidence": 0.87, "city_confidence": 0.61, "abstained": True,
        "candidates": [
            {"country": "France", "country_code": "FR", "city": "Paris", "probability": 0.61},
            {"country": "Belgium", "country_code": "BE", "city": "Brussels", "lat": 50.8503,
             "lon": 4.3517, "probability": 0.14},
            {"country": "Switzerland", "country_code": "CH", "city": "Geneva", "lat": 46.2044,
             "lon": 6.1432, "probability": 0.09},
            {"country": "Germany", "country_code": "DE", "city": "Berlin", "lat": 52.52,
             "lon": 13.405, "probability": 0.05},
        ],
    }  # fmt: skip
    real = _api_answer(server["url"], photos["small"])  # what the server says for the photo
    first = extra["candidates"][0] | {"lat": real["lat"], "lon": real["lon"]}
    answers = [
        real | extra | {"candidates": [first, *extra["candidates"][1:]]},
        real | {"country_confidence": None, "city_confidence": None, "candidates": None,
                "abstained": None},
    ]  # fmt: skip
    sent = []

    def with_candidates(route):  # the page's next POST gets the next of `answers`
        sent.append(route.request.url)
        route.fulfill(json=answers[len(sent) - 1])

    page = browser.new_page(viewport={"width": 1280, "height": 820})
    page.route("**/v1/geolocate", with_candidates)
    page.goto(server["url"] + "/")
    page.wait_for_function("document.body.dataset.state === 'ready'")
    page.fill("#key", KEY)
    assert _upload(page, photos["small"]) == "done", page.text_content("#error")
    assert page.text_content("#confidence").startswith(
        "87.0% that the country is right, 61.0% the city"
    )
    assert page.text_content("#candidates li:nth-child(2)") == "Brussels, Belgium · 14.0%"
    assert page.locator("#overlay circle.cand").count() == 3  # the top 3 of 4
    _confidence_shown(page, answers[0])
    assert _upload(page, photos["small"]) == "done", page.text_content("#error")
    _confidence_shown(page, answers[1])
    assert page.text_content("#candidates") == "–" and page.is_visible("#pred-marker")
    _no_js_error_text(page)
    page.close()


def test_the_key_is_in_no_log(server, photos):
    answer = _api_answer(server["url"], photos["small"])  # a request with the key, at least
    assert answer["country"] == "France"
    time.sleep(1)  # Ray's log monitor batches writes
    searched = []
    for root in server["logs"]:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file() and not path.is_socket():
                data = path.read_bytes()
                assert KEY.encode() not in data, f"the API key is in {path}"
                searched.append(data)
    # The search covered the Serve access log, which names every request.
    assert any(b"/v1/geolocate" in data for data in searched)


# What a page must never show: JavaScript's own words for a failure.
JS_ERROR_TEXT = ("TypeError", "Cannot read properties", "Failed to fetch", "is not a function",
                 "is not defined", "of null", "undefined", "page error")  # fmt: skip


def _no_js_error_text(page) -> None:
    shown = page.text_content("#status") + page.text_content("#error")
    assert not any(text in shown for text in JS_ERROR_TEXT), shown


def _type_key(page) -> None:
    """The key, typed before the settings came (its field is shown once they say auth is on)."""
    page.evaluate("key => (document.getElementById('key').value = key)", KEY)


def test_a_photo_chosen_before_the_settings_came_waits_for_them(browser, server, photos):
    """The file is chosen at once after navigation, while GET /v1/config is held back: the
    page says it is waiting, then locates the photo (a HEIC, sent as it is) once they come."""
    url = server["url"]
    page = browser.new_page()
    held = []
    page.route("**/v1/config", lambda route: held.append(route))  # answered below
    page.goto(url + "/", wait_until="commit")
    page.set_input_files("#file", str(photos["heic"]))
    page.wait_for_function("document.body.dataset.state === 'busy'")
    assert "Waiting for the server's settings" in page.text_content("#status")
    assert held, "the page asked for its settings"
    _type_key(page)
    held[0].continue_()
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)")
    assert page.get_attribute("body", "data-state") == "done", page.text_content("#error")
    answer = json.loads(page.text_content("#raw"))
    assert answer["country"] == "France"
    assert (answer["exif_lat"], answer["exif_lon"]) == pytest.approx(LYON, abs=1e-3)
    _no_js_error_text(page)
    page.close()


def test_settings_that_fail_are_said_in_words_and_asked_for_again(browser, server, photos):
    """GET /v1/config fails (no connection twice, then a 503): the page says the server could
    not be reached and tries again; a photo chosen meanwhile is located once it answers."""
    url = server["url"]
    page = browser.new_page()
    failures = []

    def flaky(route):
        if len(failures) < 2:
            failures.append("abort")
            route.abort("connectionrefused")
        elif len(failures) < 3:
            failures.append("503")
            route.fulfill(status=503, json={"error": "replica starting"})
        else:
            route.continue_()

    page.route("**/v1/config", flaky)
    page.goto(url + "/")
    page.wait_for_function("document.body.dataset.state === 'offline'")
    assert "The server could not be reached" in page.text_content("#error")
    assert "Trying again" in page.text_content("#error")
    _no_js_error_text(page)
    _type_key(page)
    page.set_input_files("#file", str(photos["small"]))
    assert page.get_attribute("body", "data-state") == "busy"
    page.wait_for_function(
        "['done', 'error'].includes(document.body.dataset.state)", timeout=60_000
    )
    assert page.get_attribute("body", "data-state") == "done", page.text_content("#error")
    assert failures == ["abort", "abort", "503"]
    assert json.loads(page.text_content("#raw"))["country"] == "France"
    assert page.is_hidden("#error")
    _no_js_error_text(page)
    page.close()
