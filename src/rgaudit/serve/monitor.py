"""The extraction monitor in the server: ``--monitor prada`` watches every client's answered
queries (:mod:`rgaudit.serve.prada`), records its verdict in the query log, reports it to the
operator at ``GET /v1/monitor`` (admin key required) and, with ``--monitor-action block``,
refuses flagged clients with 403.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from rgaudit.serve.prada import PradaConfig, PradaMonitor

MONITORS: tuple[str, ...] = ("none", "prada")
ACTIONS: tuple[str, ...] = ("log", "block")
#: environment variable read for the admin key when ``--admin-key`` is not given
ADMIN_KEY_ENV = "RGAUDIT_ADMIN_KEY"
ADMIN_KEY_HEADER = "X-Admin-Key"


@dataclass(frozen=True)
class MonitorSettings:
    """How the server watches for extraction.

    Attributes
    ----------
    monitor : {"none", "prada"}
        ``--monitor``; "none" changes nothing.
    action : {"log", "block"}
        ``--monitor-action``: "log" only records and reports a flagged client; "block" also
        answers its later requests with 403 ``client_flagged``.
    admin_key : str or None
        Key the operator sends in ``X-Admin-Key`` to read ``GET /v1/monitor``
        (``--admin-key`` or ``$RGAUDIT_ADMIN_KEY``); None: the endpoint answers 403 to everyone.
    prada : PradaConfig
        Detector settings (``--prada-delta`` …).
    """

    monitor: str = "none"
    action: str = "log"
    admin_key: str | None = None
    prada: PradaConfig = field(default_factory=PradaConfig)

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise ValueError(f"--monitor must be one of {', '.join(MONITORS)}, "
                             f"got {self.monitor!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"--monitor-action must be one of {', '.join(ACTIONS)}, "
                             f"got {self.action!r}")
        if self.admin_key is not None and len(self.admin_key) < 8:
            raise ValueError("--admin-key must have at least 8 characters")

    @staticmethod
    def admin_key_from(option: str | None) -> str | None:
        """``--admin-key`` if given, else ``$RGAUDIT_ADMIN_KEY``, else None."""
        return option or os.environ.get(ADMIN_KEY_ENV) or None


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class Watch:
    """The monitor as the prediction endpoint uses it."""

    def __init__(self, settings: MonitorSettings, n_features: int) -> None:
        self.settings = settings
        self.detector = PradaMonitor(settings.prada, n_features)

    def blocks(self, client: str) -> bool:
        """Whether ``client``'s request is to be refused (403) before it is answered."""
        return self.settings.action == "block" and self.detector.is_flagged(client)

    def observe(self, client: str, x: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """Feed an answered batch; the query-log fields of the verdict."""
        st = self.detector.observe(client, x, labels)
        return {"prada_flagged": st.flagged,
                "prada_w": None if st.w is None else round(st.w, 6)}


def install_monitor(app: FastAPI, settings: MonitorSettings, n_features: int) -> Watch | None:
    """Add ``GET /v1/monitor`` to ``app`` and return the :class:`Watch` (None when the monitor
    is off: then nothing is added and the endpoint is a 404)."""
    if settings.monitor == "none":
        return None
    watch = Watch(settings, n_features)
    app.state.monitor = watch
    cfg = settings.prada

    @app.get("/v1/monitor", summary="Extraction monitor report (operator only: X-Admin-Key)",
             include_in_schema=False)
    async def monitor_report(request: Request) -> JSONResponse:
        given = request.headers.get(ADMIN_KEY_HEADER)
        if settings.admin_key is None:
            return _error(403, "monitor_disabled", "the monitor report needs an admin key: "
                          f"start the server with --admin-key or ${ADMIN_KEY_ENV}")
        if not given:
            return _error(401, "missing_admin_key",
                          f"send the admin key in the {ADMIN_KEY_HEADER} header")
        if not hmac.compare_digest(given.encode(), settings.admin_key.encode()):
            return _error(403, "wrong_admin_key", "this admin key is not accepted")
        clients = [s.to_dict() for s in watch.detector.report()]
        return JSONResponse({
            "monitor": settings.monitor, "action": settings.action,
            "delta": cfg.delta, "min_distances": cfg.min_distances,
            "clients": clients, "flagged": sum(bool(c["flagged"]) for c in clients)})

    return watch
