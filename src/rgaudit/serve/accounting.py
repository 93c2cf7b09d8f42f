"""Per-client query accounting and the optional quota (in memory, per server process)."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass


def client_id(api_key: str | None) -> str:
    """What the log and the counters call a client: a short hash of its key (the key itself
    is never stored), or ``anonymous``."""
    if not api_key:
        return "anonymous"
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass
class Usage:
    """One client's usage: requests and answers (rows) served, requests refused by quota."""

    requests: int = 0
    answers: int = 0
    refused: int = 0


class Accounting:
    """Thread-safe per-client counters with an optional quota of answers per client.

    Parameters
    ----------
    quota : int or None
        Answers a client may receive in total; None: unlimited.
    """

    def __init__(self, quota: int | None = None) -> None:
        self.quota = quota
        self._usage: dict[str, Usage] = {}
        self._lock = threading.Lock()

    def reserve(self, client: str, n: int) -> bool:
        """Count ``n`` answers for ``client`` if the quota allows; False (and nothing counted
        but the refusal) if it does not."""
        with self._lock:
            u = self._usage.setdefault(client, Usage())
            if self.quota is not None and u.answers + n > self.quota:
                u.refused += 1
                return False
            u.requests += 1
            u.answers += n
            return True

    def release(self, client: str, n: int) -> None:
        """Give back a reservation whose request then failed (the answers were not served)."""
        with self._lock:
            u = self._usage.setdefault(client, Usage())
            u.requests -= 1
            u.answers -= n

    def usage(self, client: str) -> Usage:
        with self._lock:
            u = self._usage.get(client, Usage())
            return Usage(u.requests, u.answers, u.refused)

    def remaining(self, client: str) -> int | None:
        """Answers ``client`` may still receive (None: no quota)."""
        if self.quota is None:
            return None
        return max(0, self.quota - self.usage(client).answers)
