"""The online API on a real local Serve, through a real HTTP client (tiny untrained model).

Two apps share one Serve instance: ``main`` (2 replicas, batching, no auth) and ``guarded``
(API key, URL fetching on, one request at a time with a queue of one, for back-pressure). The
try-it page's routes are checked here over HTTP; ``test_serve_page.py`` runs the page itself.
Serve is shut down at the end: a running app keeps CPUs that later tests need.
"""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from georay.data.images import encode_jpeg

KEY = "s3cret-key-for-tests"
PREFIX_REPLICA = "SERVE_REPLICA::main#GeoModel#"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _jpeg(seed: int = 0, shape=(96, 128)) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 255, (*shape, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def urls(ray_session, tmp_path_factory):
    from ray import serve

    from georay.models.vlm import tiny_qwen2vl
    from georay.serve.app import ServeConfig, build_app

    model = tmp_path_factory.mktemp("tiny")
    tiny_qwen2vl(save_dir=model)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    common = dict(model=str(model), max_new_tokens=8, cpus_per_replica=0.2)
    main = ServeConfig(
        **common, num_replicas=2, batch_size=4, max_image_pixels=2_000_000,
        max_request_bytes=1 << 20,
    )  # fmt: skip
    mp = pytest.MonkeyPatch()
    mp.setenv("GEORAY_TEST_API_KEY", KEY)  # read by build_app: only its digest reaches replicas
    guarded = ServeConfig(
        **common, api_key_env="GEORAY_TEST_API_KEY", allow_url_fetch=True, batch_size=1,
        max_ongoing_requests=1, max_queued_requests=1,
    )  # fmt: skip
    try:
        serve.run(build_app(main), name="main", route_prefix="/")
        serve.run(build_app(guarded), name="guarded", route_prefix="/guarded")
        mp.undo()
        yield {"main": f"http://127.0.0.1:{port}", "guarded": f"http://127.0.0.1:{port}/guarded",
               "model": str(model)}  # fmt: skip
    finally:
        mp.undo()
        serve.shutdown()


@pytest.fixture
def client():
    with httpx.Client(timeout=60) as c:
        yield c


RESPONSE_KEYS = {
    "country", "country_code", "city", "lat", "lon", "h3", "reasons", "answered", "resolution",
    "raw_text", "model",
    "country_confidence", "city_confidence", "candidates", "abstained",  # issue 20
    "method",  # issue 21: how the row was placed (the API's model: vlm)
}  # fmt: skip
# /v1/geolocate also answers the photo's own EXIF GPS (the page's distance to it).
GEOLOCATE_KEYS = RESPONSE_KEYS | {"exif_lat", "exif_lon"}


def test_healthz(urls, client):
    body = client.get(urls["main"] + "/healthz").json()
    assert body["status"] == "ok" and body["model"]


def test_every_input_form_gives_the_same_answer(urls, client):
    data = _jpeg(1)
    url = urls["main"] + "/v1/geolocate"
    answers = [
        client.post(url, files={"image": ("a.jpg", data, "image/jpeg")}),
        client.post(url, files={"file": ("a.jpg", data, "image/jpeg")}),
        client.post(url, content=data, headers={"content-type": "image/jpeg"}),
        client.post(url, json={"image_base64": base64.b64encode(data).decode()}),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        assert set(response.json()) == GEOLOCATE_KEYS
    assert len({r.json()["raw_text"] for r in answers}) == 1  # greedy: reproducible


def test_openai_chat_completions(urls, client):
    data = _jpeg(1)
    data_url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    body = {
        "model": "georay",
        "messages": [
            {"role": "system", "content": "You are a geolocation assistant."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Where was this taken?"},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            },
        ],
    }
    response = client.post(urls["main"] + "/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["role"] == "assistant"
    same = client.post(urls["main"] + "/v1/geolocate", content=data,
                       headers={"content-type": "image/jpeg"}).json()  # fmt: skip
    assert out["choices"][0]["message"]["content"] == same["raw_text"]
    assert set(out["georay"]) == RESPONSE_KEYS


def test_geolocate_answers_the_exif_gps_of_the_photo(urls, client):
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (47.0, 22.0, 12.0), 3: "E", 4: (8.0, 32.0, 0.0)}
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 60)).save(buf, format="JPEG", exif=exif)
    url, headers = urls["main"] + "/v1/geolocate", {"content-type": "image/jpeg"}
    gps = client.post(url, content=buf.getvalue(), headers=headers).json()
    assert (gps["exif_lat"], gps["exif_lon"]) == pytest.approx((47.37, 8.5333), abs=1e-4)
    plain = client.post(url, content=_jpeg(1), headers=headers).json()
    assert plain["exif_lat"] is None and plain["exif_lon"] is None


def test_page_and_its_static_files_need_no_key(urls, client):
    page = client.get(urls["guarded"] + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/page.js"' in page.text
    # /guarded redirects to /guarded/, where the page's relative URLs resolve under the prefix.
    bare = client.get(urls["guarded"])
    assert bare.status_code == 307 and bare.headers["location"].endswith("/guarded/")
    for name in ("page.js", "page.css"):
        assert client.get(urls["guarded"] + "/static/" + name).status_code == 200
    world = client.get(urls["main"] + "/static/world.json")
    assert world.headers["content-encoding"] == "gzip"  # 168 KB of outlines travel as ~52 KB
    assert world.json()["FR"].startswith("M")
    same = client.get(
        urls["main"] + "/static/world.json", headers={"if-none-match": world.headers["etag"]}
    )
    assert same.status_code == 304 and not same.content
    for name in ("app.py", "..%2Fapp.py", "missing.js"):
        assert client.get(urls["main"] + "/static/" + name).status_code == 404


def test_config_tells_the_page_about_auth_and_limits_without_secrets(urls, client):
    main = client.get(urls["main"] + "/v1/config").json()
    assert main == {
        "model": urls["model"], "engine": "hf", "auth": False, "max_request_bytes": 1 << 20,
        "max_image_pixels": 2_000_000, "allow_url_fetch": False, "h3_resolution": 5,
        "confidence": True, "top_k": 5, "min_confidence": 0.0,
    }  # fmt: skip
    guarded = client.get(urls["guarded"] + "/v1/config")
    assert guarded.status_code == 200  # the page asks before it has a key
    assert guarded.json()["auth"] is True and guarded.json()["allow_url_fetch"] is True
    assert KEY not in guarded.text


def test_h3_cell_boundary(urls, client):
    cell = client.get(urls["main"] + "/v1/h3/851f8edbfffffff").json()
    assert cell["cell"] == "851f8edbfffffff" and len(cell["boundary"]) == 6
    lat, lon = np.mean(cell["boundary"], axis=0)
    assert (lat, lon) == pytest.approx((47.37, 8.54), abs=0.1)
    bad = client.get(urls["main"] + "/v1/h3/not-a-cell")
    assert bad.status_code == 404 and "not an H3 cell" in bad.json()["error"]


def _big_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (2000, 1100), (40, 90, 200)).save(buf, format="PNG")  # 2.2 MP, few bytes
    return buf.getvalue()


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        (dict(content=b"definitely not an image", headers={"content-type": "image/jpeg"}), 400,
         "not an image"),
        (dict(content=b"", headers={"content-type": "image/jpeg"}), 400, "empty"),
        (dict(content=_jpeg()[:200], headers={"content-type": "image/jpeg"}), 400, "bad image"),
        (dict(json={"image_base64": "not base64 !!"}), 400, "not valid base64"),
        (dict(json={"image_base64": 12}), 422, "must be a string"),
        (dict(json={"image": "x"}), 422, "image_base64"),
        (dict(json=["image_base64"]), 400, "must be an object"),
        (dict(content=b"{not json", headers={"content-type": "application/json"}), 400,
         "not valid JSON"),
        (dict(files={"other": ("a.jpg", b"x", "image/jpeg")}), 422, "field 'image'"),
        (dict(data={"image": "just text"}, files={"x": ("x", b"x")}), 422, "field 'image'"),
        (dict(content=b"a=b", headers={"content-type": "text/plain"}), 415, "multipart"),
        (dict(json={"image_url": "https://example.com/a.jpg"}), 400, "disabled"),
        (dict(content=b"x" * ((1 << 20) + 1), headers={"content-type": "image/jpeg"}), 413,
         "limit"),
        (dict(content=_big_png(), headers={"content-type": "image/png"}), 413, "too many pixels"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_4xx(urls, client, kwargs, status, message):
    response = client.post(urls["main"] + "/v1/geolocate", **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_chunked_body_over_the_limit_is_413(urls, client):
    def chunks():  # no Content-Length: the limit must hold while the body streams in
        for _ in range(40):
            yield b"y" * 32768

    response = client.post(
        urls["main"] + "/v1/geolocate", content=chunks(), headers={"content-type": "image/jpeg"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    "body, status",
    [
        ({"messages": []}, 422),
        ({"messages": [{"role": "user", "content": "no image here"}]}, 422),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
         422),
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/jpeg,rawbytes"}}]}]}, 400),
        ({"stream": True, "messages": [{"role": "user", "content": "x"}]}, 400),
    ],
)  # fmt: skip
def test_bad_chat_requests(urls, client, body, status):
    response = client.post(urls["main"] + "/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]


async def _load(url: str, images: list[bytes], concurrency: int, headers=None) -> list:
    sem = asyncio.Semaphore(concurrency)
    headers = {"content-type": "image/jpeg", **(headers or {})}

    async def one(client, data):
        async with sem:
            try:
                r = await client.post(url, content=data, headers=headers)
                return r.status_code, (r.json() if r.status_code == 200 else r.text)
            except httpx.HTTPError as err:
                return 0, str(err)

    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*[one(client, d) for d in images])


def test_concurrent_requests_are_batched_and_correct(urls, client):
    images = [_jpeg(i % 4) for i in range(32)]
    results = asyncio.run(_load(urls["main"] + "/v1/geolocate", images, 16))
    assert [status for status, _ in results] == [200] * 32
    # Batched answers equal one-at-a-time answers for the same image.
    for seed in range(4):
        alone = client.post(urls["main"] + "/v1/geolocate", content=_jpeg(seed),
                            headers={"content-type": "image/jpeg"}).json()  # fmt: skip
        batched = {
            body["raw_text"]
            for (_, body), im in zip(results, images, strict=True)
            if im == _jpeg(seed)
        }
        assert batched == {alone["raw_text"]}


def test_api_key_required_when_configured(urls, client):
    url = urls["guarded"] + "/v1/geolocate"
    data = _jpeg(2)
    headers = {"content-type": "image/jpeg"}
    assert client.post(url, content=data, headers=headers).status_code == 401
    wrong = client.post(url, content=data, headers={**headers, "x-api-key": KEY + "x"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]
    assert client.post(url, content=data, headers={**headers, "x-api-key": KEY}).status_code == 200
    bearer = {**headers, "authorization": f"Bearer {KEY}"}
    assert client.post(url, content=data, headers=bearer).status_code == 200
    assert client.get(urls["guarded"] + "/healthz").status_code == 200  # probes need no key
    # The unguarded app needs none.
    assert client.post(urls["main"] + "/v1/geolocate", content=data,
                       headers=headers).status_code == 200  # fmt: skip


def test_url_fetching_when_on_refuses_internal_targets(urls, client):
    url = urls["guarded"] + "/v1/geolocate"
    auth = {"x-api-key": KEY}
    internal = client.post(url, json={"image_url": urls["main"] + "/healthz"}, headers=auth)
    assert internal.status_code == 403 and "non-public" in internal.json()["error"]
    metadata = client.post(url, json={"image_url": "http://169.254.169.254/latest"}, headers=auth)
    assert metadata.status_code == 403
    scheme = client.post(url, json={"image_url": "file:///etc/passwd"}, headers=auth)
    assert scheme.status_code == 400 and "http(s)" in scheme.json()["error"]


def test_back_pressure_gives_503(urls):
    # guarded: one request in flight and one queued per replica; the rest must be refused.
    images = [_jpeg(3)] * 24
    results = asyncio.run(
        _load(urls["guarded"] + "/v1/geolocate", images, 24, headers={"x-api-key": KEY})
    )
    codes = [status for status, _ in results]
    assert 503 in codes, codes
    assert set(codes) <= {200, 503}, codes
    assert 200 in codes


def _replicas(ray) -> list[str]:
    names = ray.util.list_named_actors(all_namespaces=True)
    return sorted(a["name"] for a in names if a["name"].startswith(PREFIX_REPLICA))


def test_killed_replica_is_replaced_and_requests_recover(urls, ray_session, client):
    ray = ray_session
    before = _replicas(ray)
    assert len(before) == 2
    victim = before[0]

    async def load_and_kill():
        task = asyncio.ensure_future(
            _load(urls["main"] + "/v1/geolocate", [_jpeg(i % 3) for i in range(60)], 8)
        )
        await asyncio.sleep(0.3)  # the load is under way
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        return await task

    results = asyncio.run(load_and_kill())
    codes = [status for status, _ in results]
    # Requests routed to the dying replica may fail; the survivor keeps answering.
    assert codes.count(200) >= len(codes) // 2, codes
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        now = _replicas(ray)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(1)
    assert victim not in _replicas(ray) and len(_replicas(ray)) == 2
    later = asyncio.run(_load(urls["main"] + "/v1/geolocate", [_jpeg(0)] * 16, 8))
    assert [status for status, _ in later] == [200] * 16


def test_geolocate_reads_a_heic_body_upright_with_its_gps(urls, client):
    """An iPhone photo as it is: HEIC, turned by its rotation box, with EXIF GPS."""
    from georay.data.images import decode_image
    from georay.synth.formats import encode_photo

    pixels = np.random.default_rng(5).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    heic = encode_photo(pixels, "HEIF", gps=(52.516, 13.3777), orientation=6)
    url = urls["main"] + "/v1/geolocate"
    response = client.post(url, content=heic, headers={"content-type": "image/heic"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["exif_lat"], answer["exif_lon"]) == pytest.approx((52.516, 13.3777), abs=1e-4)
    upright = decode_image(heic)
    assert upright.shape == (128, 96, 3)
    buf = io.BytesIO()
    Image.fromarray(upright).save(buf, format="PNG")
    same = client.post(url, files={"image": ("upright.png", buf.getvalue(), "image/png")})
    assert same.json()["raw_text"] == answer["raw_text"]
    multipart = client.post(url, files={"image": ("IMG_0001.HEIC", heic, "image/heic")})
    assert multipart.json()["raw_text"] == answer["raw_text"]
