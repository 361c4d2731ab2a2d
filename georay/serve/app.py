"""The online geolocation API: one Ray Serve deployment with a FastAPI ingress.

Endpoints (see :func:`build_app` for the settings):

``POST /v1/geolocate``
    The image as a multipart upload (field ``image`` or ``file``), a raw ``image/*`` body, or
    JSON ``{"image_base64": "..."}`` / ``{"image_url": "https://..."}`` (URL fetching is off
    unless ``allow_url_fetch``; :mod:`georay.data.urls` has the rules). Answers the DESIGN
    "predictions" fields: country, country_code, city, lat, lon, h3, reasons, answered, model,
    and the photo's own EXIF GPS as ``exif_lat``/``exif_lon`` (null when it has none), and
    the confidence fields of every predictions row: ``country_confidence``,
    ``city_confidence``, ``candidates`` (top ``--top-k`` places, the answer first) and
    ``abstained`` (under ``--min-confidence``), calibrated when the model has a
    ``calibration.json``.
``POST /v1/chat/completions``
    OpenAI-compatible. With ``--engine vllm`` the caller's own messages (system, user and
    assistant turns; text and ``image_url`` parts, ``data:`` URLs or http(s) when fetching is
    on) are answered, greedily, and ``stream: true`` sends server-sent events as OpenAI clients
    expect. With ``--engine hf`` the last user message's first image is asked georay's
    question (the model is trained on that one question, so text parts are ignored). The
    answer parsed as a prediction rides along under ``georay``.
``GET /healthz``
    Liveness and the model id; no auth, so load balancers can probe it.
``GET /``
    A page to try the API in a browser (:mod:`georay.serve.page`): drop a photo, see the
    answer on a world map. Its assets come from ``GET /static/{name}``; it reads
    ``GET /v1/config`` (auth on or off, size limits, URL fetching; no secrets) and draws the
    predicted cell from ``GET /v1/h3/{cell}``. None of these need the API key: they hold no
    secrets and run no model.

The replica holds its engine's online model (:mod:`georay.predict.engine`). With ``--engine hf``
requests are batched across callers with ``@serve.batch`` (``max_ongoing_requests`` is kept >=
``batch_size``, else batches could never fill) and the model runs in a worker thread so the
replica keeps accepting and decoding requests meanwhile; with ``--engine vllm`` the replica holds
vLLM's async engine, which batches continuously across callers by itself.
``max_queued_requests`` makes the proxy answer 503 instead of queueing without bound. Bodies over ``max_request_bytes`` get 413
before they are read in full. An API key (off by default) is compared in constant time.
"""

# No `from __future__ import annotations`: FastAPI must see the real `Request` type on the
# endpoint methods, and Serve pickles this class by value, where string annotations do not resolve.

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import asdict

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve

from georay.data.exif import gps_from_bytes
from georay.data.images import ImageDecodeError, decode_fit
from georay.data.urls import FetchError, fetch_url
from georay.errors import UserError
from georay.geo.cells import cell_boundary
from georay.predict.config import ModelSettings
from georay.predict.engine import ENGINES
from georay.predict.place import rows_from_texts
from georay.predict.vllm_engine import engine_error
from georay.protocol.predictions import ANSWER_FIELDS
from georay.runtime import init_ray
from georay.serve.config import ServeConfig
from georay.serve.page import asset

log = logging.getLogger(__name__)

DEPLOYMENT_NAME = "GeoModel"
# Fields of a prediction the API answers with (raw_text too: it is what the model said); status
# and error become the HTTP status instead.
RESPONSE_FIELDS = tuple(f for f in ANSWER_FIELDS if f not in ("answer_error", "status", "error"))


class HTTPError(Exception):
    """An answer to the client: status code and message (rendered as ``{"error": ...}``)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


api = FastAPI(title="georay", description="Where was this photo taken? (GeoReasoner on Ray)")


@api.exception_handler(HTTPError)
async def _http_error(request: Request, err: HTTPError) -> JSONResponse:
    return JSONResponse({"error": err.message}, status_code=err.status)


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _b64(text: object) -> bytes:
    if not isinstance(text, str):
        raise HTTPError(422, "image_base64 must be a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPError(400, "image_base64 is not valid base64") from None


def _data_url(url: str) -> bytes:
    header, sep, data = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise HTTPError(400, "data: URLs must be base64 (data:image/...;base64,...)")
    return _b64(data)


def _env_key_digest(name: str | None) -> str | None:
    """Digest of the API key in environment variable ``name``; None when auth is off."""
    if not name:
        return None
    key = os.environ.get(name)
    if not key:
        raise ValueError(f"api_key_env={name!r} but that environment variable is empty or unset")
    return _key_digest(key)


def _exif_fields(data: bytes) -> dict:
    """``exif_lat``/``exif_lon`` of an image that decoded fine (None when it has no GPS)."""
    try:
        gps = gps_from_bytes(data)
    except ImageDecodeError:
        gps = None
    return {"exif_lat": gps and gps[0], "exif_lon": gps and gps[1]}


def _asset_response(name: str, request: Request) -> Response:
    """A static file of the page: gzipped when the client accepts it, 304 when unchanged."""
    found = asset(name)
    if found is None:
        raise HTTPError(404, f"no static file {name!r}")
    # no-cache = revalidate every time: a new release's page is never mixed with old assets.
    headers = {"ETag": found.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    body = found.body
    if "gzip" in request.headers.get("accept-encoding", ""):
        body, headers["Content-Encoding"] = found.gzipped, "gzip"
    return Response(body, media_type=found.media_type, headers=headers)


def _completion(model: str, text: str, finish: str, row: dict) -> dict:
    """An OpenAI chat completion, with georay's parsed prediction under ``georay``."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        ],
        "georay": {k: row.get(k) for k in RESPONSE_FIELDS},
    }


async def _sse(model: str, stream):
    """OpenAI-style server-sent events: a role chunk, text deltas, a finish chunk, [DONE]."""
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}  # fmt: skip

    def chunk(delta: dict, finish: str | None) -> str:
        body = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""}, None)
    try:
        async for text, finish in stream:
            if text:
                yield chunk({"content": text}, None)
            if finish:
                yield chunk({}, finish)
    except Exception as err:  # headers are sent: say it in the stream, as OpenAI does
        yield f"data: {json.dumps({'error': {'message': engine_error(err)}})}\n\n"
    yield "data: [DONE]\n\n"


# Serve serializes the class when it is decorated: every helper it uses is defined above.
@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress(api)
class GeoModel:
    """A replica: the engine (transformers or vLLM), request decoding and the model call."""

    def __init__(self, settings: dict, api_key_sha256: str | None = None):
        self.cfg = ServeConfig(**settings)
        self.model_id = self.cfg.model
        self.api_key_sha256 = api_key_sha256 or _env_key_digest(self.cfg.api_key_env)
        self.engine = ENGINES[self.cfg.engine].online(
            ModelSettings.of(settings),
            max_batch_size=self.cfg.batch_size,
            batch_wait_timeout_s=self.cfg.batch_wait_timeout_s,
        )

    def __del__(self):
        if getattr(self, "engine", None) is not None:
            self.engine.close()  # vLLM's engine-core process and memory go with the replica

    # -- endpoints ------------------------------------------------------------------------

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok", "model": self.model_id, "engine": self.cfg.engine}

    @api.get("/")
    async def page(self, request: Request) -> Response:
        return _asset_response("index.html", request)

    @api.get("/static/{name}")
    async def static(self, name: str, request: Request) -> Response:
        return _asset_response(name, request)

    @api.get("/v1/config")
    async def config(self) -> dict:
        """What a client needs before its first request; never the key itself."""
        return {
            "model": self.model_id,
            "engine": self.cfg.engine,
            "auth": self.api_key_sha256 is not None,
            "max_request_bytes": self.cfg.max_request_bytes,
            "max_image_pixels": self.cfg.max_image_pixels,
            "allow_url_fetch": self.cfg.allow_url_fetch,
            "h3_resolution": self.cfg.h3_resolution,
            "confidence": self.cfg.confidence,
            "top_k": self.cfg.top_k,
            "min_confidence": self.cfg.min_confidence,
        }

    @api.get("/v1/h3/{cell}")
    async def h3_cell(self, cell: str) -> dict:
        try:
            ring = cell_boundary(cell)
        except ValueError as err:
            raise HTTPError(404, str(err)) from None
        return {"cell": cell, "boundary": [[lat, lon] for lat, lon in ring]}

    @api.post("/v1/geolocate")
    async def geolocate(self, request: Request) -> dict:
        self._authorize(request)
        data = await self._image_bytes(request)
        row = await self._predict_one(data)
        return {**{k: row.get(k) for k in RESPONSE_FIELDS}, **_exif_fields(data)}

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request):
        self._authorize(request)
        payload = await self._json(request)
        if self.engine.conversations:
            return await self._chat(payload)
        if payload.get("stream"):
            raise HTTPError(400, "streaming needs the vllm engine; send stream=false")
        data = await self._chat_image(payload)
        row = await self._predict_one(data)
        return _completion(self.model_id, row["raw_text"], "stop", row)

    # -- the model call -------------------------------------------------------------------

    async def _decode(self, data: bytes):
        try:
            return await asyncio.to_thread(
                decode_fit,
                data,
                self.engine.max_pixels,
                max_image_pixels=self.cfg.max_image_pixels,
            )
        except ImageDecodeError as err:
            status = 413 if err.reason.startswith("too many pixels") else 400
            raise HTTPError(status, f"bad image: {err.reason}") from None

    def _place(self, text) -> dict:
        return rows_from_texts([text], h3_resolution=self.cfg.h3_resolution,
                               model_id=self.model_id)[0]  # fmt: skip

    async def _predict_one(self, data: bytes) -> dict:
        image = await self._decode(data)
        try:
            row = await self.engine.answer(image)
        except UserError as err:  # the engine refused this input: say why, keep serving
            raise HTTPError(400, f"the model could not answer: {err}") from None
        if row["status"] != "ok":
            raise HTTPError(500, f"prediction failed: {row['error']}")
        return row

    async def _chat(self, payload: dict):
        """The caller's own conversation (text and image parts), for an engine that takes one."""
        prompt, images = await self._render_chat(payload)
        max_tokens = payload.get("max_completion_tokens") or payload.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise HTTPError(422, "max_tokens must be a positive integer")
        max_tokens = min(max_tokens or self.cfg.max_new_tokens, self.cfg.max_new_tokens)
        stream = self.engine.stream(prompt, images, max_tokens)
        if payload.get("stream"):
            return StreamingResponse(_sse(self.model_id, stream), media_type="text/event-stream")
        parts, finish = [], "stop"
        try:
            async for text, reason in stream:
                parts.append(text)
                finish = reason or finish
        except Exception as err:
            raise HTTPError(400, f"the model could not answer: {engine_error(err)}") from None
        text = "".join(parts)
        return _completion(self.model_id, text, finish, self._place(text))

    async def _render_chat(self, payload: dict) -> tuple[str, list]:
        """Messages -> (chat-template prompt, decoded images in order); 4xx on bad input."""
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise HTTPError(422, "'messages' must be a non-empty list")
        rendered, images = [], []
        for message in messages:
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("system", "user", "assistant"):
                raise HTTPError(422, "each message needs a role: system, user or assistant")
            content = message.get("content")
            if isinstance(content, str):
                rendered.append({"role": role, "content": content})
                continue
            if not isinstance(content, list):
                raise HTTPError(422, "message content must be a string or a list of parts")
            parts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    parts.append({"type": "text", "text": part["text"]})
                elif kind == "image_url":
                    images.append(await self._decode(await self._image_part(part)))
                    parts.append({"type": "image"})
                else:
                    raise HTTPError(422, "content parts must be text or image_url")
            rendered.append({"role": role, "content": parts})
        if len(images) > self.cfg.max_images:
            raise HTTPError(
                400, f"{len(images)} images, but this server takes {self.cfg.max_images}"
            )
        return self.engine.chat_prompt(rendered), images

    async def _image_part(self, part: dict) -> bytes:
        ref = part.get("image_url")
        url = ref.get("url") if isinstance(ref, dict) else ref
        if not isinstance(url, str):
            raise HTTPError(422, "image_url content part needs a 'url'")
        # Fetched here under georay's rules, never by the engine (vLLM would fetch any URL).
        return _data_url(url) if url.startswith("data:") else await self._fetch(url)

    # -- request parsing ------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        if self.api_key_sha256 is None:
            return
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        # Compare digests in constant time: neither the key nor its length leaks by timing.
        if given is None or not hmac.compare_digest(_key_digest(given), self.api_key_sha256):
            raise HTTPError(401, "missing or invalid API key")

    async def _body(self, request: Request) -> bytes:
        limit = self.cfg.max_request_bytes
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise HTTPError(413, f"request body of {length} bytes is over the {limit}-byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():  # also bounds chunked bodies with no length
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"request body is over the {limit}-byte limit")
            chunks.append(chunk)
        body = b"".join(chunks)
        request._body = body  # later request.form()/json() read this instead of the stream
        return body

    async def _json(self, request: Request) -> dict:
        body = await self._body(request)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise HTTPError(400, "request body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise HTTPError(400, "JSON body must be an object")
        return payload

    async def _image_bytes(self, request: Request) -> bytes:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            await self._body(request)
            try:
                form = await request.form()
            except Exception as err:
                raise HTTPError(400, f"malformed multipart body: {err}") from None
            upload = form.get("image") or form.get("file")
            if upload is None or isinstance(upload, str):
                raise HTTPError(422, "multipart body needs a file field 'image'")
            return await upload.read()
        if kind.startswith("image/") or kind == "application/octet-stream":
            return await self._body(request)
        if kind == "application/json":
            payload = await self._json(request)
            if payload.get("image_base64") is not None:
                return _b64(payload["image_base64"])
            if payload.get("image_url") is not None:
                return await self._fetch(payload["image_url"])
            raise HTTPError(422, "JSON body needs 'image_base64' or 'image_url'")
        raise HTTPError(
            415,
            "send multipart/form-data (field 'image'), an image/* body, or JSON with "
            f"'image_base64' or 'image_url' (got content type {kind or 'none'!r})",
        )

    async def _chat_image(self, payload: dict) -> bytes:
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise HTTPError(422, "'messages' must be a non-empty list")
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        content = users[-1].get("content") if users else None
        parts = content if isinstance(content, list) else []
        for part in parts:
            if isinstance(part, dict) and part.get("type") == "image_url":
                return await self._image_part(part)
        raise HTTPError(422, "the last user message needs an image_url content part")

    async def _fetch(self, url: object) -> bytes:
        if not self.cfg.allow_url_fetch:
            raise HTTPError(400, "image_url fetching is disabled on this server; send the image")
        if not isinstance(url, str):
            raise HTTPError(422, "image_url must be a string")
        try:
            return await asyncio.to_thread(
                fetch_url, url, max_bytes=self.cfg.url_max_bytes, timeout_s=self.cfg.url_timeout_s
            )
        except FetchError as err:
            raise HTTPError(err.status, str(err)) from None


def build_app(args: dict | ServeConfig):
    """The Serve application; also the ``import_path`` target of the serve config YAML.

    Parameters
    ----------
    args : dict or ServeConfig
        :class:`ServeConfig` fields (the YAML's ``args``). The API key, if any, is read here
        from ``api_key_env`` when that variable is set where the app is built; only its SHA-256
        reaches the replicas (else each replica reads the variable itself).
    """
    import ray

    cfg = args if isinstance(args, ServeConfig) else ServeConfig(**args)
    key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    gpus = cfg.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) else 0.0
    return GeoModel.options(
        num_replicas=cfg.num_replicas,
        max_ongoing_requests=cfg.max_ongoing_requests,
        max_queued_requests=cfg.max_queued_requests,
        ray_actor_options={"num_cpus": cfg.cpus_per_replica, "num_gpus": gpus},
    ).bind(asdict(cfg), _key_digest(key) if key else None)


def run(cfg: ServeConfig, *, blocking: bool = True) -> None:
    """Start Serve on ``cfg.host:cfg.port`` and deploy the app (``georay serve``).

    With ``blocking`` it serves until Ctrl-C or SIGTERM (what ``docker stop`` and Kubernetes
    send), then shuts the app down: a running app keeps its CPUs and GPUs otherwise.
    """
    ENGINES[cfg.engine].check(cfg)  # refuse what it cannot load here, not in a restarting replica
    init_ray(cfg.address)
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(build_app(cfg), name=cfg.app_name, route_prefix=cfg.route_prefix)
    log.info("georay API on http://%s:%d%s", cfg.host, cfg.port, cfg.route_prefix)
    if not blocking:
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
