"""Settings of the prediction server (limits, quota, query log)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeSettings:
    """Limits and bookkeeping of one server process.

    Attributes
    ----------
    max_batch : int
        Most inputs in one request (more: 413).
    max_body_bytes : int
        Largest request body (more: 413). The default fits ``max_batch`` rows of 784 features
        written with 17 significant digits.
    max_pending : int
        Requests admitted at once (computing or waiting for the model); more get 503 at once,
        so overload costs neither memory nor time.
    queue_timeout_s : float
        Longest wait of an admitted request for the model; then 503.
    quota : int or None
        Answers (rows) each client may receive over the server's lifetime; beyond: 429.
    api_key_header : str
        Header naming the client. Requests without it count as client ``anonymous``.
    require_key : bool
        Refuse requests without a key (401).
    api_keys : frozenset of str or None
        The keys that are accepted (others: 401); None accepts any key, which then only names
        the client — a thief could rotate keys around the quota, so set this when a quota
        matters.
    log_path : Path or None
        Query log (JSONL, append-only); None: no log.
    log_max_bytes : int
        Size at which the log is rotated (``log.jsonl`` -> ``log.jsonl.1`` ...).
    log_backups : int
        Rotated files kept.
    seed : int
        Seed of randomised defences (random noise).
    inline_max_batch : int
        Requests of at most this many inputs may be computed on the event loop instead of a
        worker thread (no thread hand-over) when the server is idle
        and such batches took at most ``inline_max_s`` the last time; 0: never
        (:mod:`rgaudit.serve.predict`).
    inline_max_s : float
        Longest computation of a small batch that still allows computing the next one on the
        event loop (the event loop is busy that long).
    """

    max_batch: int = 256
    max_body_bytes: int = 8 * 1024 * 1024
    max_pending: int = 32
    queue_timeout_s: float = 10.0
    quota: int | None = None
    api_key_header: str = "X-API-Key"
    require_key: bool = False
    api_keys: frozenset[str] | None = None
    log_path: Path | None = None
    log_max_bytes: int = 50 * 1024 * 1024
    log_backups: int = 5
    seed: int = 0
    inline_max_batch: int = 1
    inline_max_s: float = 0.005

    def __post_init__(self) -> None:
        checks = [
            (self.max_batch >= 1, f"--max-batch must be >= 1, got {self.max_batch}"),
            (self.max_body_bytes >= 1024,
             f"--max-body-bytes must be >= 1024, got {self.max_body_bytes}"),
            (self.max_pending >= 1, f"--max-pending must be >= 1, got {self.max_pending}"),
            (self.queue_timeout_s > 0,
             f"--queue-timeout must be > 0 seconds, got {self.queue_timeout_s}"),
            (self.quota is None or self.quota >= 1, f"--quota must be >= 1, got {self.quota}"),
            (self.log_max_bytes >= 1024,
             f"--log-max-bytes must be >= 1024, got {self.log_max_bytes}"),
            (self.inline_max_batch >= 0,
             f"--inline-max-batch must be >= 0, got {self.inline_max_batch}"),
            (0 < self.inline_max_s <= 0.1,
             f"inline_max_s must lie in (0, 0.1] seconds, got {self.inline_max_s}"),
            (self.log_backups >= 1, f"--log-backups must be >= 1, got {self.log_backups}"),
            (bool(self.api_key_header.strip()), "the API key header name must not be empty"),
            (self.api_keys is None or (len(self.api_keys) > 0 and all(self.api_keys)),
             "--keys must list at least one non-empty key"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
