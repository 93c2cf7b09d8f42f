"""``rgaudit serve``: an HTTP prediction API for a model behind an anti-cloning defence."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rgaudit.serve.monitor import MonitorSettings


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""

    @app.command("serve")
    def serve(
        model: str = typer.Argument(..., help="Model (any format rgaudit loads), or 'default'."),
        defence: str = typer.Option(None, "--defence",
                                    help="none, rg, random, reverse-sigmoid or mad "
                                    "(default none; not with --config)."),
        eps: float = typer.Option(None, "--eps", help="Budget per answer (default 0.2; not "
                                  "with --config)."),
        norm: str = typer.Option(None, "--norm", help="l1, l2 or kl (default l1; not with "
                                 "--config)."),
        estimator: str = typer.Option(
            None, "--estimator", help="Generation-FIM estimator of --defence rg: auto (the "
            "library default, accurate but slow: an MCRG chain per answer on networks too wide to "
            "enumerate) or mean-field (fast; its magnitude is off, docs/cloning.md). Not with "
            "--config."),
        config: Path = typer.Option(None, "--config", help="Poisoning config written by "
                                    "rgaudit protect."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: int = typer.Option(8000, "--port", min=0, max=65535),
        max_batch: int = typer.Option(256, "--max-batch", help="Most inputs per request."),
        max_body_bytes: int = typer.Option(8 * 1024 * 1024, "--max-body-bytes",
                                           help="Largest request body."),
        max_pending: int = typer.Option(32, "--max-pending",
                                        help="Requests admitted at once (more: 503)."),
        queue_timeout: float = typer.Option(10.0, "--queue-timeout",
                                            help="Seconds a request may wait (then 503)."),
        quota: int = typer.Option(None, "--quota", help="Answers per API key (then 429)."),
        require_key: bool = typer.Option(False, "--require-key",
                                         help="Refuse requests without an API key."),
        keys: Path = typer.Option(None, "--keys", help="File of accepted API keys, one per "
                                  "line (others get 401)."),
        log: Path = typer.Option(None, "--log", help="Query log (JSONL, rotated by size)."),
        log_max_bytes: int = typer.Option(50 * 1024 * 1024, "--log-max-bytes"),
        seed: int = typer.Option(0, "--seed", help="Seed of the random-noise defence."),
        threads: int = typer.Option(1, "--threads", min=1,
                                    help="Torch/BLAS threads of this process (run one process "
                                    "per core)."),
        monitor: str = typer.Option("none", "--monitor", help="Extraction monitor: none or "
                                    "prada (Juuti et al. 2019; docs/serving.md)."),
        monitor_action: str = typer.Option("log", "--monitor-action", help="What a flagged "
                                           "client gets: log (recorded and reported only) or "
                                           "block (403 from then on)."),
        prada_delta: float = typer.Option(None, "--prada-delta", help="Flag a client when the "
                                          "Shapiro-Wilk W of its distances < this (default: "
                                          "the value calibrated on digits, docs/serving.md)."),
        inline_max_batch: int = typer.Option(
            1, "--inline-max-batch", min=0, help="Requests of at most this many inputs are "
            "computed on the event loop (no thread hand-over) when the server is idle and "
            "such a batch took under 5 ms the last time; 0: always in the worker thread."),
        admin_key: str = typer.Option(None, "--admin-key", help="Key (X-Admin-Key header) for "
                                      "GET /v1/monitor; default $RGAUDIT_ADMIN_KEY (prefer the "
                                      "variable: options show in the process list)."),
    ) -> None:
        """Serve MODEL's (defended) answers over HTTP: POST /v1/predict, GET /v1/model,
        GET /healthz, OpenAPI at /docs."""
        import uvicorn

        from rgaudit.serve.app import create_app
        from rgaudit.serve.loading import load_defended
        from rgaudit.serve.runner import http_stack, stack_line, uvicorn_config
        from rgaudit.serve.settings import ServeSettings

        api_keys = None
        if keys is not None:
            api_keys = frozenset(k.strip() for k in keys.read_text().splitlines() if k.strip())
        try:
            settings = ServeSettings(
                max_batch=max_batch, max_body_bytes=max_body_bytes, max_pending=max_pending,
                queue_timeout_s=queue_timeout, quota=quota, require_key=require_key,
                api_keys=api_keys,
                log_path=log, log_max_bytes=log_max_bytes, seed=seed,
                inline_max_batch=inline_max_batch)
            watch = _monitor_settings(monitor, monitor_action, prada_delta, admin_key)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        from rgaudit.threads import pin_thread

        pin_thread(threads)      # this thread (loading, warm-up); workers pin themselves
        try:
            defended = load_defended(model, defence=defence, eps=eps, norm=norm, config=config,
                                     seed=seed, estimator=estimator)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        typer.echo(defended.startup_line())             # estimator and measured cost
        app = create_app(defended, settings, watch, threads=threads)
        typer.echo(f"serving {model} with defence {defended.poisoner.name!r} on "
                   f"http://{host}:{port} (OpenAPI: /docs)")
        if watch.monitor != "none":
            typer.echo(f"extraction monitor {watch.monitor} (delta {watch.prada.delta}, action "
                       f"{watch.action}); report at GET /v1/monitor "
                       + ("with the X-Admin-Key header" if watch.admin_key else
                          "disabled: no --admin-key / $RGAUDIT_ADMIN_KEY"))
        http, loop = http_stack()
        typer.echo(stack_line(http, loop))
        uvicorn.Server(uvicorn_config(app, host, port, log_level="info", http=http,
                                      loop=loop)).run()


def _monitor_settings(monitor: str, action: str, delta: float | None,
                      admin_key: str | None) -> MonitorSettings:
    """``MonitorSettings`` of the ``--monitor*``, ``--prada-delta`` and ``--admin-key`` options."""
    from rgaudit.serve.monitor import MonitorSettings
    from rgaudit.serve.prada import PradaConfig

    if monitor == "none" and (delta is not None or action != "log"):
        raise ValueError("--prada-delta and --monitor-action need --monitor prada")
    prada = PradaConfig() if delta is None else PradaConfig(delta=delta)
    return MonitorSettings(monitor=monitor, action=action,
                           admin_key=MonitorSettings.admin_key_from(admin_key), prada=prada)
