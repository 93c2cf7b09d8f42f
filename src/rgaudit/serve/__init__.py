"""Serving a (defended) classifier over HTTP: ``rgaudit serve``.

- :mod:`rgaudit.serve.settings` — limits, quota and log settings (validated dataclass);
- :mod:`rgaudit.serve.defended` — the model plus its output-poisoning defence (what is served);
- :mod:`rgaudit.serve.schemas` — request/response models (pydantic, in the OpenAPI schema);
- :mod:`rgaudit.serve.accounting` — per-client query counts and the optional quota;
- :mod:`rgaudit.serve.querylog` — append-only JSONL query log, rotated by size;
- :mod:`rgaudit.serve.errors` — the JSON error body of every refusal;
- :mod:`rgaudit.serve.inputs` — from a request body to a validated batch (each 4xx);
- :mod:`rgaudit.serve.predict` — ``POST /v1/predict``: keys, quota, admission, compute, log;
- :mod:`rgaudit.serve.app` — the FastAPI application factory (routes, error handlers, the
  fast path of ``POST /v1/predict``);
- :mod:`rgaudit.serve.runner` — uvicorn (httptools/uvloop when installed), foreground or
  background;
- :mod:`rgaudit.serve.prada` — the PRADA extraction detector (pure logic);
- :mod:`rgaudit.serve.monitor` — ``--monitor prada`` in the server (``GET /v1/monitor``);
- :mod:`rgaudit.serve.client` — an HTTP client of the API (used by ``clone-attack --target``).
"""
