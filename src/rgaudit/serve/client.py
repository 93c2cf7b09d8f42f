"""A client of the prediction API: what a thief (or ``rgaudit clone-attack --target``) uses."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np


class APIError(RuntimeError):
    """The server refused a request (its status, code and message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} ({code}): {message}")
        self.status, self.code, self.message = status, code, message


def check_target(url: str) -> str:
    """Validate a ``http://HOST:PORT`` target; returns it without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--target must look like http://HOST:PORT, got {url!r}")
    return url.rstrip("/")


class PredictionClient:
    """Query a served model over HTTP.

    Parameters
    ----------
    url : str
        ``http://HOST:PORT`` of an ``rgaudit serve`` process.
    api_key : str, optional
        Sent in the server's API key header.
    timeout : float, default 60
        Seconds per request.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.url = check_target(url)
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self.info = self._get("/v1/model")
        self.n_features = int(self.info["n_features"])
        self.n_classes = int(self.info["n_classes"])
        self.max_batch = int(self.info["limits"]["max_batch"])
        header = str(self.info["limits"].get("api_key_header", "X-API-Key"))
        if api_key:
            self._http.headers[header] = api_key
        self.n_queries = 0

    def _get(self, path: str) -> dict[str, Any]:
        return self._check(self._http.get(path))

    @staticmethod
    def _check(resp: httpx.Response) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            raise APIError(resp.status_code, str(err.get("code", "http_error")),
                           str(err.get("message", resp.text[:200])))
        return body

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Returned probabilities of inputs ``x`` (n, n_features) -> (n, n_classes), float64,
        sent in batches of the server's ``max_batch``."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        out = []
        for start in range(0, len(x), self.max_batch):
            chunk = x[start:start + self.max_batch]
            body = self._check(self._http.post("/v1/predict", json={"inputs": chunk.tolist()}))
            out.append(np.asarray(body["probabilities"], dtype=np.float64))
            self.n_queries += len(chunk)
        if not out:
            return np.zeros((0, self.n_classes))
        return np.concatenate(out)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PredictionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
