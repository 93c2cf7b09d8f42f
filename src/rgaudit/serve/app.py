"""The FastAPI application: ``POST /v1/predict``, ``GET /v1/model``, ``GET /healthz`` and the
generated OpenAPI schema (``/openapi.json``, ``/docs``).

Every refusal is a 4xx (or 503 under overload) with the body ``{"error": {"code", "message"}}``;
an unexpected failure is a 500 with a generic message — the traceback goes to the server's log,
never to the client. Requests are admitted up to ``max_pending`` at a time (more: 503 at once),
wait at most ``queue_timeout_s`` for the model (then 503), and run one at a time in a worker
thread, so overload is refused instead of queued in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import anyio
import numpy as np
import pydantic_core
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rgaudit.serve.accounting import Accounting, client_id
from rgaudit.serve.defended import DefendedModel
from rgaudit.serve.monitor import MonitorSettings, install_monitor
from rgaudit.serve.querylog import QueryLog
from rgaudit.serve.schemas import ErrorResponse, ModelInfo, PredictRequest, PredictResponse
from rgaudit.serve.settings import ServeSettings
from rgaudit.threads import pin_thread

logger = logging.getLogger("rgaudit.serve")


class ApiError(Exception):
    """A refusal with its HTTP status, a short machine-readable code and a message for people."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _error(status: int, code: str, message: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def _reject_constant(name: str) -> float:
    raise ApiError(422, "non_finite", f"inputs must be finite numbers; got {name}")


def _parse_json(raw: bytes) -> Any:
    """The request body as Python objects: pydantic-core's JSON parser (Rust; ~4x faster than
    the standard library on a batch of 256 inputs, the same floats), and for any body it
    refuses, the standard library's parser — which then accepts it or classifies the error
    exactly as before (400 malformed JSON, 422 NaN/Infinity, ...)."""
    try:
        return pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError:
        pass
    return json.loads(raw, parse_constant=_reject_constant)


_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 401, 413, 415, 422, 429, 503)}


def create_app(model: DefendedModel, settings: ServeSettings | None = None,
               monitor: MonitorSettings | None = None, *, threads: int | None = None
               ) -> FastAPI:
    """Build the API for ``model``.

    Parameters
    ----------
    model : DefendedModel
    settings : ServeSettings, optional
    monitor : MonitorSettings, optional
        The extraction monitor (default off; :mod:`rgaudit.serve.monitor`).
    threads : int, optional
        Torch/BLAS threads of each worker thread that computes answers
        (:func:`rgaudit.threads.pin_thread`); None: the process default.

    Returns
    -------
    FastAPI
        With ``app.state.accounting`` (per-client usage) and ``app.state.query_log``.
    """
    s = settings or ServeSettings()
    if model.poisoner.name != "none" and getattr(model.poisoner, "engine", None) == "compiled":
        from rgaudit.defence.step_search import warm_up

        warm_up()               # compile the step search now, not on the first request
    clf = model.classifier
    lo, hi = (float(b) for b in clf.bounds)
    n_features = clf.n_features
    accounting = Accounting(s.quota)
    qlog = QueryLog(s.log_path, s.log_max_bytes, s.log_backups) if s.log_path else None
    limiter = anyio.CapacityLimiter(1)
    state = {"pending": 0}
    info = {**model.describe(), "limits": {
        "max_batch": s.max_batch, "max_body_bytes": s.max_body_bytes,
        "max_pending": s.max_pending, "queue_timeout_s": s.queue_timeout_s, "quota": s.quota,
        "api_key_header": s.api_key_header}}

    app = FastAPI(title="rgaudit prediction API",
                  description="Class probabilities of a classifier behind an output-poisoning "
                  "defence (rgaudit serve).", version="1", debug=False)
    app.state.accounting = accounting
    app.state.query_log = qlog
    watch = install_monitor(app, monitor or MonitorSettings(), n_features)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _describe(exc.errors()))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s", request.url.path)
        return _error(500, "internal_error", "internal error; the request was not answered")

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model", response_model=ModelInfo, summary="Model description (no weights)")
    async def model_info() -> dict[str, Any]:
        return info

    @app.post("/v1/predict", response_model=PredictResponse, responses=_ERRORS,
              summary="Answer a batch of inputs",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": PredictRequest.model_json_schema()}}}})
    async def predict(request: Request) -> Response:
        t0 = time.perf_counter()
        client = client_id(request.headers.get(s.api_key_header))
        record: dict[str, Any] = {"client": client, "n": 0}
        try:
            key = request.headers.get(s.api_key_header)
            if (s.require_key or s.api_keys is not None) and not key:
                raise ApiError(401, "missing_api_key",
                               f"send your API key in the {s.api_key_header} header")
            if s.api_keys is not None and key not in s.api_keys:
                raise ApiError(401, "unknown_api_key", "this API key is not accepted")
            if watch is not None and watch.blocks(client):
                raise ApiError(403, "client_flagged", "this client was flagged by the "
                               "extraction monitor; contact the operator")
            x = await _read_inputs(request)
            record["n"] = len(x)
            record["inputs_sha256"] = [hashlib.sha256(r.tobytes()).hexdigest()[:16] for r in x]
            if not accounting.reserve(client, len(x)):
                raise ApiError(429, "quota_exceeded",
                               f"this client's quota of {s.quota} answers is used up "
                               f"({accounting.usage(client).answers} served)")
            try:
                p, labels = await _compute(x)
            except BaseException:
                accounting.release(client, len(x))
                raise
            if watch is not None:
                record.update(await anyio.to_thread.run_sync(watch.observe, client, x, labels))
            body = {"probabilities": p.tolist(), "labels": labels.tolist(),
                    "defence": model.poisoner.name,
                    "quota_remaining": accounting.remaining(client)}
            record.update(status=200, labels=body["labels"])
            return Response(pydantic_core.to_json(body), media_type="application/json")
        except ApiError as err:
            record.update(status=err.status, error=err.code)
            raise
        except Exception:
            record.update(status=500, error="internal_error")
            raise
        finally:
            record["ms"] = round(1e3 * (time.perf_counter() - t0), 3)
            if qlog is not None:
                qlog.write(**record)

    async def _read_inputs(request: Request) -> np.ndarray:
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "unsupported_media_type",
                           f"send the body as application/json, got {ctype or 'no content type'!r}")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > s.max_body_bytes):
            raise ApiError(413, "body_too_large",
                           f"the body is limited to {s.max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > s.max_body_bytes:
                raise ApiError(413, "body_too_large",
                               f"the body is limited to {s.max_body_bytes} bytes")
            chunks.append(chunk)
        try:
            doc = _parse_json(b"".join(chunks))
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            if isinstance(err, json.JSONDecodeError):
                msg = f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
            elif isinstance(err, RecursionError):
                msg = "malformed JSON (nested too deeply)"
            else:
                msg = "malformed JSON (not UTF-8 text)"
            raise ApiError(400, "malformed_json", msg) from None
        if isinstance(doc, dict) and isinstance(doc.get("inputs"), list) \
                and len(doc["inputs"]) > s.max_batch:
            raise ApiError(413, "batch_too_large",
                           f"at most {s.max_batch} inputs per request, got {len(doc['inputs'])}")
        try:
            req = PredictRequest.model_validate(doc)
        except ValidationError as err:
            raise ApiError(422, "invalid_request", _describe(err.errors())) from None
        if not req.inputs:
            raise ApiError(422, "empty_batch", "inputs must hold at least one input")
        bad = [i for i, row in enumerate(req.inputs) if len(row) != n_features]
        if bad:
            raise ApiError(422, "wrong_shape",
                           f"each input must have {n_features} numbers (the model's input shape "
                           f"{tuple(clf.input_shape)} flattened); input {bad[0]} has "
                           f"{len(req.inputs[bad[0]])}")
        try:
            x = np.asarray(req.inputs, dtype=np.float64)
        except OverflowError:                              # an integer beyond float64
            raise ApiError(422, "non_finite", "inputs must be finite numbers (an integer "
                           "too large for float64 found)") from None
        if not np.all(np.isfinite(x)):
            raise ApiError(422, "non_finite", "inputs must be finite numbers (NaN or inf found)")
        if x.min() < lo or x.max() > hi:
            raise ApiError(422, "out_of_range",
                           f"inputs must lie in the model's range [{lo:g}, {hi:g}]; got values "
                           f"in [{x.min():g}, {x.max():g}]")
        return x

    def _predict(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pin_thread(threads)     # a worker thread: the thread limit of `rgaudit serve --threads`
        return model.predict(x)

    async def _compute(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if state["pending"] >= s.max_pending:
            raise ApiError(503, "overloaded", "the server is at capacity; retry later",
                           {"Retry-After": "1"})
        state["pending"] += 1
        try:
            try:
                with anyio.fail_after(s.queue_timeout_s):
                    await limiter.acquire()
            except TimeoutError:
                raise ApiError(503, "queue_timeout",
                               f"no model time within {s.queue_timeout_s:g} s; retry later",
                               {"Retry-After": "1"}) from None
            try:
                return await anyio.to_thread.run_sync(_predict, x)
            finally:
                limiter.release()
        finally:
            state["pending"] -= 1

    return app


def _describe(errors: Any) -> str:
    """Pydantic errors as one line, without echoing the input values."""
    parts = []
    for e in list(errors)[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    more = len(list(errors)) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
