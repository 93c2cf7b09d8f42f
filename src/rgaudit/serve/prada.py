"""PRADA-style extraction monitor (Juuti et al. 2019, "PRADA: Protecting against DNN Model
Stealing Attacks", EuroS&P): per-client distribution of minimum query distances, Shapiro–Wilk.

The idea: a benign client's queries are natural samples, and the L2 distance of each new query
to the closest earlier query of the same predicted class is roughly normally distributed; the
synthetic queries of extraction attacks that perturb earlier queries (Papernot's Jacobian
augmentation, its variants) give many small distances and a few large ones, a clearly non-normal
distribution. Per client ``u`` and predicted class ``c``:

1. a *growing set* ``G_c`` of the client's queries of class ``c``. The first query of class ``c``
   enters ``G_c``; a later one ``x`` has the minimum distance ``d = min_{g ∈ G_c} ‖x − g‖₂``;
   ``d`` is appended to the client's distance list ``D``, and if ``d > T_c`` the query enters
   ``G_c`` too, its distance is appended to ``DG_c`` and the threshold becomes
   ``T_c ← max(T_c, mean(DG_c) − std(DG_c))`` (``DG_c`` starts with a 0 for the first member,
   ``T_c`` at 0, as in the authors' published implementation);
2. once ``|D| ≥ min_distances`` (100 in the paper), every ``test_every`` new distances the
   distances within ``outlier_sigma`` standard deviations of their mean are tested with the
   Shapiro–Wilk test (:func:`scipy.stats.shapiro`) and the client is *flagged* when the
   statistic ``W < delta``.

Differences from the paper, all for bounded memory and time in a server:

- ``G_c`` keeps at most ``max_kept_per_class`` queries (float32); when full, the oldest member
  is replaced (first in, first out). The mean and standard deviation of ``DG_c`` are running
  sums over every member ever added (O(1) memory).
- ``D`` is a window of the last ``max_distances`` distances (the paper keeps all).
- At most ``max_clients`` clients are tracked; beyond, the least recently seen client's state is
  dropped (its queries are forgotten, its flag too — a thief who rotates API keys evades PRADA
  anyway; :mod:`rgaudit.serve.accounting` has the same limitation for the quota).
- A flag is *sticky* (an alarm for the operator): once ``W < delta`` the client stays flagged;
  ``w`` keeps the latest statistic and ``w_min`` the smallest.

Memory per client is at most ``n_classes · max_kept_per_class · n_features · 4`` bytes for the
growing sets plus ``8 · max_distances`` bytes for ``D``
(:meth:`PradaConfig.bytes_per_client`); the whole monitor at most ``max_clients`` times that.
Cost per query: one vectorised distance computation against ``G_c``, O(|G_c| d), plus one
Shapiro–Wilk test (O(|D| log |D|)) every ``test_every`` queries.

This module is pure logic (NumPy and SciPy; no web framework).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

#: The paper's detection threshold on the Shapiro–Wilk statistic for MNIST (Juuti et al. 2019,
#: δ = 0.96 for MNIST and 0.87 for GTSRB, each chosen on that dataset's benign queries). On the
#: 8×8 digits it flags 64 % of honest test-set clients (benchmarks/prada_eval.py).
PAPER_DELTA = 0.96
#: The default: calibrated as the paper did, on benign streams of the digits model — the smallest
#: W any of 100 calibration honest clients reached (0.925), rounded down to 0.01. Measured on
#: other clients: 1 % false alarms (docs/serving.md, "Extraction monitor (PRADA)"). Recalibrate
#: for other data (``--prada-delta``).
CALIBRATED_DELTA = 0.92


@dataclass(frozen=True)
class PradaConfig:
    """Settings of the PRADA detector.

    Attributes
    ----------
    delta : float
        Flag a client when the Shapiro–Wilk statistic ``W < delta`` (``--prada-delta``);
        in [0, 1] (0 never flags: calibration). Default :data:`CALIBRATED_DELTA`, not the
        paper's :data:`PAPER_DELTA`.
    min_distances : int
        Distances needed before the first test (the paper: 100); ≥ 3.
    test_every : int
        Test after every ``test_every`` new distances (1: after every query, as in the paper's
        algorithm; the authors' implementation tests every 10).
    outlier_sigma : float or None
        Drop distances farther than this many standard deviations from their mean before the
        test (the authors' implementation: 3); None keeps all.
    max_kept_per_class : int
        Most queries kept in each growing set ``G_c`` (oldest replaced first).
    max_distances : int
        Window of distances ``D`` tested (the last ones); ≥ ``min_distances``.
    max_clients : int
        Clients tracked at once (least recently seen dropped first).
    """

    delta: float = CALIBRATED_DELTA
    min_distances: int = 100
    test_every: int = 10
    outlier_sigma: float | None = 3.0
    max_kept_per_class: int = 256
    max_distances: int = 2000
    max_clients: int = 256

    def __post_init__(self) -> None:
        checks = [
            (0.0 <= self.delta <= 1.0, f"--prada-delta must lie in [0, 1], got {self.delta}"),
            (self.min_distances >= 3,
             f"the PRADA minimum number of distances must be >= 3, got {self.min_distances}"),
            (self.test_every >= 1, f"PRADA test_every must be >= 1, got {self.test_every}"),
            (self.outlier_sigma is None or self.outlier_sigma > 0,
             f"PRADA outlier_sigma must be > 0 or None, got {self.outlier_sigma}"),
            (self.max_kept_per_class >= 1,
             f"PRADA max_kept_per_class must be >= 1, got {self.max_kept_per_class}"),
            (self.max_distances >= self.min_distances,
             f"PRADA max_distances ({self.max_distances}) must be >= min_distances "
             f"({self.min_distances})"),
            (self.max_clients >= 1, f"PRADA max_clients must be >= 1, got {self.max_clients}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def bytes_per_client(self, n_features: int, n_classes: int) -> int:
        """Upper bound of one client's state in bytes (growing sets and distance window)."""
        return 4 * n_classes * self.max_kept_per_class * n_features + 8 * self.max_distances


@dataclass(frozen=True)
class ClientStatus:
    """What the monitor knows about one client.

    Attributes
    ----------
    client : str
    flagged : bool
        ``W < delta`` at some test (sticky).
    n_queries : int
        Queries observed.
    n_distances : int
        Distances in the tested window ``D`` (≤ ``max_distances``).
    w : float or None
        Latest Shapiro–Wilk statistic (None before the first test).
    w_min : float or None
        Smallest statistic so far.
    flagged_at : int or None
        Number of queries observed when the client was first flagged.
    growing_set : int
        Queries kept in the growing sets (all classes).
    """

    client: str
    flagged: bool
    n_queries: int
    n_distances: int
    w: float | None
    w_min: float | None
    flagged_at: int | None
    growing_set: int

    def to_dict(self) -> dict[str, object]:
        return {"client": self.client, "flagged": self.flagged, "n_queries": self.n_queries,
                "n_distances": self.n_distances, "w": self.w, "w_min": self.w_min,
                "flagged_at": self.flagged_at, "growing_set": self.growing_set}


@dataclass
class _ClassSet:
    """One growing set ``G_c``: a ring buffer of queries and running moments of ``DG_c``."""

    rows: np.ndarray                     # (cap, d) float32
    size: int = 0
    next: int = 0                        # slot the next member goes to
    threshold: float = 0.0
    n: int = 0                           # members of DG_c ever (incl. the first's 0)
    mean: float = 0.0
    m2: float = 0.0                      # Welford's sum of squared deviations

    def add(self, x: np.ndarray, dist: float) -> None:
        cap = len(self.rows)
        self.rows[self.next] = x
        self.next = (self.next + 1) % cap
        self.size = min(self.size + 1, cap)
        self.n += 1
        delta = dist - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (dist - self.mean)

    def min_distance(self, x: np.ndarray) -> float:
        diff = self.rows[:self.size].astype(np.float64) - x
        return float(np.sqrt(np.min(np.einsum("ij,ij->i", diff, diff))))

    def update_threshold(self) -> None:
        std = math.sqrt(self.m2 / self.n) if self.n else 0.0        # population std
        self.threshold = max(self.threshold, self.mean - std)


@dataclass
class _ClientState:
    distances: np.ndarray                # (max_distances,) float64 ring buffer
    sets: dict[int, _ClassSet] = field(default_factory=dict)
    n_queries: int = 0
    n_dist: int = 0                      # distances ever
    since_test: int = 0
    w: float | None = None
    w_min: float | None = None
    flagged_at: int | None = None

    def window(self) -> np.ndarray:
        m = len(self.distances)
        if self.n_dist <= m:
            return self.distances[:self.n_dist]
        return self.distances                      # order does not matter to the test


def shapiro_w(distances: np.ndarray, outlier_sigma: float | None) -> float:
    """Shapiro–Wilk ``W`` of ``distances`` after dropping outliers (see :class:`PradaConfig`).

    Parameters
    ----------
    distances : ndarray of shape (n,)
    outlier_sigma : float or None

    Returns
    -------
    float
        ``W`` in (0, 1]; 1.0 when fewer than 3 distances remain or all are equal
        (:func:`scipy.stats.shapiro` is undefined there — equal distances are not the
        small-and-large mixture PRADA looks for).
    """
    d = np.asarray(distances, dtype=np.float64)
    if outlier_sigma is not None and len(d) > 0:
        mu, sd = d.mean(), d.std()
        if sd > 0:
            d = d[np.abs(d - mu) < outlier_sigma * sd]
    if len(d) < 3 or np.ptp(d) == 0:
        return 1.0
    return float(stats.shapiro(d).statistic)


class PradaMonitor:
    """Per-client PRADA detectors (thread-safe).

    Parameters
    ----------
    config : PradaConfig
    n_features : int
        Length of a flat input.
    """

    def __init__(self, config: PradaConfig, n_features: int) -> None:
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        self.config = config
        self.n_features = int(n_features)
        self._clients: OrderedDict[str, _ClientState] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, client: str, x: np.ndarray, labels: np.ndarray) -> ClientStatus:
        """Feed one client's answered queries, in order.

        Parameters
        ----------
        client : str
        x : ndarray of shape (n, n_features)
            The queries (flat).
        labels : ndarray of shape (n,)
            The classes the model predicted for them.

        Returns
        -------
        ClientStatus
            After the last query.
        """
        x = np.asarray(x)
        labels = np.asarray(labels)
        if x.ndim != 2 or x.shape[1] != self.n_features or labels.shape != (len(x),):
            raise ValueError(f"need x of shape (n, {self.n_features}) and labels of shape (n,), "
                             f"got {x.shape} and {labels.shape}")
        cfg = self.config
        with self._lock:
            st = self._state(client)
            for row, c in zip(x, labels.tolist(), strict=True):
                self._one(st, np.asarray(row, dtype=np.float64), int(c))
                if st.n_dist >= cfg.min_distances and st.since_test >= cfg.test_every:
                    self._test(st)
            return self._status(client, st)

    def status(self, client: str) -> ClientStatus | None:
        """The client's status, or None if it is not tracked."""
        with self._lock:
            st = self._clients.get(client)
            return None if st is None else self._status(client, st)

    def distances(self, client: str) -> np.ndarray:
        """The client's window of minimum distances ``D`` (oldest first), shape (m,)."""
        with self._lock:
            st = self._clients.get(client)
            if st is None:
                return np.zeros(0)
            w = st.window()
            if st.n_dist > len(w):
                w = np.roll(w, -(st.n_dist % len(w)))
            return w.copy()

    def is_flagged(self, client: str) -> bool:
        with self._lock:
            st = self._clients.get(client)
            return st is not None and st.flagged_at is not None

    def report(self) -> list[ClientStatus]:
        """Every tracked client, most recently seen last."""
        with self._lock:
            return [self._status(c, st) for c, st in self._clients.items()]

    # -- internals (called with the lock held) ------------------------------------------

    def _state(self, client: str) -> _ClientState:
        st = self._clients.get(client)
        if st is None:
            st = _ClientState(np.zeros(self.config.max_distances))
            self._clients[client] = st
            while len(self._clients) > self.config.max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        return st

    def _one(self, st: _ClientState, x: np.ndarray, c: int) -> None:
        st.n_queries += 1
        g = st.sets.get(c)
        if g is None:
            g = _ClassSet(np.empty((self.config.max_kept_per_class, self.n_features),
                                   dtype=np.float32))
            g.add(x, 0.0)
            st.sets[c] = g
            return
        d = g.min_distance(x)
        st.distances[st.n_dist % len(st.distances)] = d
        st.n_dist += 1
        st.since_test += 1
        if d > g.threshold:
            g.add(x, d)
            g.update_threshold()

    def _test(self, st: _ClientState) -> None:
        st.since_test = 0
        w = shapiro_w(st.window(), self.config.outlier_sigma)
        st.w = w
        st.w_min = w if st.w_min is None else min(st.w_min, w)
        if w < self.config.delta and st.flagged_at is None:
            st.flagged_at = st.n_queries

    def _status(self, client: str, st: _ClientState) -> ClientStatus:
        return ClientStatus(client=client, flagged=st.flagged_at is not None,
                            n_queries=st.n_queries, n_distances=min(st.n_dist,
                                                                    len(st.distances)),
                            w=st.w, w_min=st.w_min, flagged_at=st.flagged_at,
                            growing_set=sum(g.size for g in st.sets.values()))
