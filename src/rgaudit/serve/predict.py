"""``POST /v1/predict``: who is asking (API key, quota, monitor block), admission to the model
(a bounded number of pending requests, a queue timeout, one computation at a time), the
answer, and the query-log record of every request.

Where an answer is computed: in a worker thread, so that the event loop stays free to read,
refuse (503) and time out other requests while a batch is computed. The exception is a request
of at most ``inline_max_batch`` inputs arriving while the server is idle (no other request
admitted) when the last computations of such batches took at most ``inline_max_s``: it is
computed on the event loop, which saves the two thread hand-overs (waking the worker,
waking the loop). The loop is then busy for one such computation (the last took at most
``inline_max_s``); requests arriving meanwhile wait in the socket buffer and are admitted,
refused or timed out exactly as before, that much later. A model slower than that (the
MCRG-chain estimator, ~100 ms) is always computed in the worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import anyio
import numpy as np
import pydantic_core
from starlette.requests import Request
from starlette.responses import Response

from rgaudit.serve.accounting import Accounting, client_id
from rgaudit.serve.defended import DefendedModel
from rgaudit.serve.errors import ApiError, error_response
from rgaudit.serve.inputs import InputRules
from rgaudit.serve.monitor import Watch
from rgaudit.serve.querylog import QueryLog
from rgaudit.serve.settings import ServeSettings
from rgaudit.threads import pin_thread

logger = logging.getLogger("rgaudit.serve")


class PredictHandler:
    """Answers ``POST /v1/predict`` requests for one server.

    Parameters
    ----------
    model : DefendedModel
    settings : ServeSettings
    accounting : Accounting
    query_log : QueryLog or None
    watch : Watch or None
        The extraction monitor (None: off).
    threads : int or None
        Torch/BLAS threads of a thread that computes answers (:func:`pin_thread`).

    Attributes
    ----------
    inline_answers : int
        Requests answered on the event loop (see the module's docstring); the rest went to
        the worker thread.
    """

    def __init__(self, model: DefendedModel, settings: ServeSettings, accounting: Accounting,
                 query_log: QueryLog | None, watch: Watch | None, threads: int | None) -> None:
        clf = model.classifier
        lo, hi = (float(b) for b in clf.bounds)
        self.rules = InputRules(clf.n_features, tuple(clf.input_shape), lo, hi,
                                settings.max_batch, settings.max_body_bytes)
        self.model, self.s, self.accounting = model, settings, accounting
        self.query_log, self.watch, self.threads = query_log, watch, threads
        self.limiter = anyio.CapacityLimiter(1)
        self.pending = 0
        self.inline_answers = 0
        self._small_s: float | None = None   # wall time of the last small computation

    async def __call__(self, request: Request) -> Response:
        """The response to one request: the answers, or the JSON error of a refusal (500 with
        a generic message for an unexpected failure, whose traceback goes to the log)."""
        t0 = time.perf_counter()
        key = request.headers.get(self.s.api_key_header)
        client = client_id(key)
        record: dict[str, Any] = {"client": client, "n": 0}
        try:
            response = await self._answer(request, key, client, record)
        except ApiError as err:
            record.update(status=err.status, error=err.code)
            response = error_response(err.status, err.code, err.message, err.headers)
        except Exception:
            record.update(status=500, error="internal_error")
            logger.exception("internal error on %s", request.url.path)
            response = error_response(500, "internal_error",
                                      "internal error; the request was not answered")
        finally:
            if self.query_log is not None:
                record["ms"] = round(1e3 * (time.perf_counter() - t0), 3)
                self.query_log.write(**record)
        return response

    def _check_client(self, key: str | None, client: str) -> None:
        """401 without an accepted key (when keys are required), 403 for a blocked client."""
        s = self.s
        if (s.require_key or s.api_keys is not None) and not key:
            raise ApiError(401, "missing_api_key",
                           f"send your API key in the {s.api_key_header} header")
        if s.api_keys is not None and key not in s.api_keys:
            raise ApiError(401, "unknown_api_key", "this API key is not accepted")
        if self.watch is not None and self.watch.blocks(client):
            raise ApiError(403, "client_flagged", "this client was flagged by the "
                           "extraction monitor; contact the operator")

    async def _answer(self, request: Request, key: str | None, client: str,
                      record: dict[str, Any]) -> Response:
        self._check_client(key, client)
        x = await self.rules.read(request)
        record["n"] = len(x)
        if self.query_log is not None:
            record["inputs_sha256"] = [hashlib.sha256(r.tobytes()).hexdigest()[:16] for r in x]
        if not self.accounting.reserve(client, len(x)):
            raise ApiError(429, "quota_exceeded",
                           f"this client's quota of {self.s.quota} answers is used up "
                           f"({self.accounting.usage(client).answers} served)")
        try:
            p, labels = await self._compute(x)
        except BaseException:
            self.accounting.release(client, len(x))
            raise
        if self.watch is not None:
            record.update(await anyio.to_thread.run_sync(self.watch.observe, client, x, labels))
        body = {"probabilities": p.tolist(), "labels": labels.tolist(),
                "defence": self.model.poisoner.name,
                "quota_remaining": self.accounting.remaining(client)}
        record.update(status=200, labels=body["labels"])
        return Response(pydantic_core.to_json(body), media_type="application/json")

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pin_thread(self.threads)   # the thread limit of `rgaudit serve --threads`
        t = time.perf_counter()
        out = self.model.predict(x)
        if len(x) <= self.s.inline_max_batch:
            self._small_s = time.perf_counter() - t
        return out

    def _inline(self, n: int) -> bool:
        """Whether a batch of ``n`` inputs, admitted and holding the model, is computed on the
        event loop: small, the server otherwise idle, and such batches known to be fast."""
        return (n <= self.s.inline_max_batch and self.pending == 1
                and self._small_s is not None and self._small_s <= self.s.inline_max_s)

    async def _compute(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's answers: 503 beyond ``max_pending`` admitted requests or after
        ``queue_timeout_s`` without the model; one computation at a time."""
        s = self.s
        if self.pending >= s.max_pending:
            raise ApiError(503, "overloaded", "the server is at capacity; retry later",
                           {"Retry-After": "1"})
        self.pending += 1
        try:
            try:
                self.limiter.acquire_nowait()     # the model is free and nobody waits for it
            except anyio.WouldBlock:
                try:
                    with anyio.fail_after(s.queue_timeout_s):
                        await self.limiter.acquire()
                except TimeoutError:
                    raise ApiError(503, "queue_timeout",
                                   f"no model time within {s.queue_timeout_s:g} s; retry later",
                                   {"Retry-After": "1"}) from None
            try:
                if self._inline(len(x)):
                    self.inline_answers += 1
                    return self._predict(x)
                return await anyio.to_thread.run_sync(self._predict, x)
            finally:
                self.limiter.release()
        finally:
            self.pending -= 1
