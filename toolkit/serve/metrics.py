"""``/metrics``: the Prometheus counters of one ``tk serve``, across its workers.

One process keeps its counts in its own registry. With ``--workers N`` the N
processes share one port, so a scrape reaches whichever worker the kernel picks:
per-worker counts would jump between scrapes. There the parent gives every worker
one directory (``PROMETHEUS_MULTIPROC_DIR``, prometheus-client's multiprocess
mode) and any worker's ``/metrics`` sums the counters and histograms of all of
them, dead ones included (counters never go back). Which workers are alive, and
each one's resident memory, are read at scrape time: ``tk_serve_worker{pid}``
and ``tk_serve_worker_resident_memory_bytes{pid}``, with
``tk_serve_worker_start_time_seconds{pid}``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """Requests by route and status, latency, rows per runtime call, rows run."""

    def __init__(self, shared_dir: str | None = None) -> None:
        """``shared_dir``: the workers' common directory (``--workers N``), or None
        for a process that counts alone."""
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.shared_dir = shared_dir
        # One registry per app: several apps in one process (tests) never share counts.
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tk_serve_requests", "HTTP requests by route and status", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "tk_serve_request_seconds",
            "Request latency in seconds",
            ["route"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.batch_rows = Histogram(
            "tk_serve_batch_rows",
            "Rows per runtime call (dynamic batching)",
            ["model"],
            registry=r,
            buckets=BATCH_BUCKETS,
        )
        self.rows = Counter("tk_serve_rows", "Rows run", ["model"], registry=r)
        if shared_dir is None:
            from prometheus_client import ProcessCollector

            # process_resident_memory_bytes and friends: this one process.
            ProcessCollector(registry=r)
            Gauge("tk_serve_worker", "The process answering", ["pid"], registry=r).labels(
                str(os.getpid())
            ).set(1)
        else:
            # This worker's start time, in a file of its own in the shared directory:
            # the file also says the worker is one of this server's.
            Gauge(
                "tk_serve_worker_start_time_seconds",
                "Start time of each worker, seconds since the epoch",
                multiprocess_mode="liveall",
                registry=r,
            ).set(time.time())

    def exposition(self) -> bytes:
        """The Prometheus text format of every worker's counts (or this process's)."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        if self.shared_dir is None:
            return generate_latest(self.registry)
        live = _live_workers(Path(self.shared_dir))
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.shared_dir)
        registry.register(_WorkersCollector(live))
        return generate_latest(registry)


def _live_workers(shared: Path) -> list[int]:
    """Workers alive now; a gone worker's liveness file is removed (its counts stay)."""
    from prometheus_client import multiprocess

    pids = set()
    for f in shared.glob("gauge_liveall_*.db"):
        pid = int(f.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(shared))
            continue
        except PermissionError:
            pass  # alive, another user's: not ours to judge
        pids.add(pid)
    return sorted(pids)


class _WorkersCollector:
    """``tk_serve_worker{pid} 1`` and its resident memory, per live worker."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def collect(self) -> Any:
        """The two gauge families, read from ``/proc`` now."""
        from prometheus_client.core import GaugeMetricFamily

        alive = GaugeMetricFamily("tk_serve_worker", "A live worker process", labels=["pid"])
        rss = GaugeMetricFamily(
            "tk_serve_worker_resident_memory_bytes", "Resident memory per worker", labels=["pid"]
        )
        page = os.sysconf("SC_PAGE_SIZE")
        for pid in self.pids:
            alive.add_metric([str(pid)], 1)
            try:
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone since, or no /proc on this system
            rss.add_metric([str(pid)], pages * page)
        return [alive, rss]
