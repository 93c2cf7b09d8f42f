"""Run the API with uvicorn: in the foreground (``rgaudit serve``) or in a background thread
on an ephemeral loopback port (tests, benchmarks)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp


def http_stack() -> tuple[str, str]:
    """The HTTP parser and event loop uvicorn is told to use: ``httptools`` (llhttp, compiled)
    and ``uvloop`` (libuv) when importable (the ``serve`` extra installs both), else uvicorn's
    pure-Python ``h11`` parser and the standard library's ``asyncio`` loop."""
    return (_importable("httptools", "h11"), _importable("uvloop", "asyncio"))


def _importable(module: str, fallback: str) -> str:
    import importlib.util

    return module if importlib.util.find_spec(module) is not None else fallback


def stack_line(http: str, loop: str) -> str:
    """One start-up line naming the HTTP parser and event loop (and what is missing)."""
    line = f"HTTP stack: uvicorn with the {http} parser on the {loop} event loop"
    missing = [m for m, used in (("httptools", http), ("uvloop", loop)) if used != m]
    if missing:
        line += (f" ({' and '.join(missing)} not installed: slower at batch 1; "
                 "pip install 'rgaudit[serve]')")
    return line


def uvicorn_config(app: ASGIApp, host: str, port: int, *, max_connections: int = 256,
                   log_level: str = "warning", http: str | None = None,
                   loop: str | None = None) -> uvicorn.Config:
    """uvicorn settings of a prediction server: one process, HTTP/1.1 keep-alive, a cap on
    open connections (beyond it uvicorn answers 503), no server header; the parser and loop
    of :func:`http_stack` unless ``http`` / ``loop`` name others (``h11``, ``asyncio``)."""
    fast_http, fast_loop = http_stack()
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          limit_concurrency=max_connections, timeout_keep_alive=5,
                          server_header=False, lifespan="off", http=http or fast_http,
                          loop=loop or fast_loop)


class BackgroundServer:
    """uvicorn in a daemon thread, stopped on exit from the ``with`` block.

    Parameters
    ----------
    app : FastAPI
    host : str, default "127.0.0.1"
    port : int, default 0
        0 picks a free port; read it from :attr:`port` after start.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                 **config: object) -> None:
        self.server = uvicorn.Server(uvicorn_config(app, host, port, **config))  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.run, daemon=True,
                                       name="rgaudit-serve")
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > timeout:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
