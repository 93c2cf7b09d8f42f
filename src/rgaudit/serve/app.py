"""The FastAPI application: ``POST /v1/predict``, ``GET /v1/model``, ``GET /healthz`` and the
generated OpenAPI schema (``/openapi.json``, ``/docs``).

Every refusal is a 4xx (or 503 under overload) with the body ``{"error": {"code", "message"}}``;
an unexpected failure is a 500 with a generic message — the traceback goes to the server's log,
never to the client. Requests are admitted up to ``max_pending`` at a time (more: 503 at once),
wait at most ``queue_timeout_s`` for the model (then 503), and run one at a time
(:mod:`rgaudit.serve.predict`), so overload is refused instead of queued in memory.

``POST /v1/predict`` is declared as a FastAPI route (its OpenAPI entry: request body, response
model, error responses), but served by :class:`PredictFastPath`, a pure ASGI middleware that
hands the request straight to the same :class:`~rgaudit.serve.predict.PredictHandler` the
route calls, skipping Starlette's routing, exception middleware and FastAPI's dependency
resolution (a few tenths of a millisecond of server CPU per request, docs/serving.md).
Both paths produce the same response (tested).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from rgaudit.serve.accounting import Accounting
from rgaudit.serve.defended import DefendedModel
from rgaudit.serve.errors import ApiError, describe, error_response
from rgaudit.serve.monitor import MonitorSettings, install_monitor
from rgaudit.serve.predict import PredictHandler, logger
from rgaudit.serve.querylog import QueryLog
from rgaudit.serve.schemas import ErrorResponse, ModelInfo, PredictRequest, PredictResponse
from rgaudit.serve.settings import ServeSettings

#: documented error responses of ``POST /v1/predict`` (403: a client blocked by the monitor)
ERROR_STATUSES: tuple[int, ...] = (400, 401, 403, 413, 415, 422, 429, 503)
_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in ERROR_STATUSES}
_ERRORS[403]["description"] = ("Forbidden: the client was flagged by the extraction monitor "
                               "(--monitor prada --monitor-action block), code client_flagged")
PREDICT_PATH = "/v1/predict"


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
        Torch/BLAS threads of each thread that computes answers
        (:func:`rgaudit.threads.pin_thread`); None: the process default.

    Returns
    -------
    FastAPI
        With ``app.state.accounting`` (per-client usage), ``app.state.query_log`` and
        ``app.state.predict`` (the :class:`PredictHandler`).
    """
    s = settings or ServeSettings()
    _warm_up(model)
    app = FastAPI(title="rgaudit prediction API",
                  description="Class probabilities of a classifier behind an output-poisoning "
                  "defence (rgaudit serve).", version="1", debug=False)
    app.state.accounting = Accounting(s.quota)
    app.state.query_log = (QueryLog(s.log_path, s.log_max_bytes, s.log_backups)
                           if s.log_path else None)
    watch = install_monitor(app, monitor or MonitorSettings(), model.classifier.n_features)
    handler = PredictHandler(model, s, app.state.accounting, app.state.query_log, watch, threads)
    app.state.predict = handler
    _install_error_handlers(app)
    _install_routes(app, handler, _model_info(model, s))
    app.add_middleware(PredictFastPath, handler=handler)
    return app


def _warm_up(model: DefendedModel) -> None:
    """Compile the step search now, not on the first request."""
    if model.poisoner.name != "none" and getattr(model.poisoner, "engine", None) == "compiled":
        from rgaudit.defence.step_search import warm_up

        warm_up()


def _model_info(model: DefendedModel, s: ServeSettings) -> dict[str, Any]:
    """``GET /v1/model``: the model's public description and the server's limits."""
    return {**model.describe(), "limits": {
        "max_batch": s.max_batch, "max_body_bytes": s.max_body_bytes,
        "max_pending": s.max_pending, "queue_timeout_s": s.queue_timeout_s, "quota": s.quota,
        "api_key_header": s.api_key_header}}


def _install_error_handlers(app: FastAPI) -> None:
    """Every error (the API's refusals, 404/405, FastAPI's validation, anything unexpected)
    as the JSON error body."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", describe(exc.errors()))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s", request.url.path)
        return error_response(500, "internal_error",
                              "internal error; the request was not answered")


def _install_routes(app: FastAPI, handler: PredictHandler, info: dict[str, Any]) -> None:
    """``GET /healthz``, ``GET /v1/model`` and ``POST /v1/predict`` (whose body schema is
    declared with ``openapi_extra``: the handler reads the raw body itself)."""

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model", response_model=ModelInfo, summary="Model description (no weights)")
    async def model_info() -> dict[str, Any]:
        return info

    @app.post(PREDICT_PATH, response_model=PredictResponse, responses=_ERRORS,
              summary="Answer a batch of inputs",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": PredictRequest.model_json_schema()}}}})
    async def predict(request: Request) -> Response:
        return await handler(request)


class PredictFastPath:
    """ASGI middleware: ``POST /v1/predict`` goes straight to ``handler``; everything else to
    the application (routing, 404/405, the other endpoints, ``/openapi.json``).

    Parameters
    ----------
    app : ASGI application
    handler : PredictHandler
    """

    def __init__(self, app: ASGIApp, handler: PredictHandler) -> None:
        self.app, self.handler = app, handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PREDICT_PATH \
                and scope["method"] == "POST":
            response = await self.handler(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)
