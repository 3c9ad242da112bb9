"""Counters, gauges and latency histograms, rendered in Prometheus text format on request.

Thread-safe: the scheduler thread writes, an HTTP thread reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: Scheduler latencies (decisions, commits): sub-millisecond to a second.
BUCKETS_MS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0, 1000.0)
#: Trial durations: a no-op takes milliseconds, a large solve or a long simulation step hours.
TRIAL_BUCKETS_MS = (
    1.0, 5.0, 10.0, 50.0, 100.0, 500.0,
    1e3, 5e3, 1e4, 3e4, 6e4, 3e5, 6e5, 1.8e6, 3.6e6, 1.44e7, 8.64e7,
)  # fmt: skip


class Metrics:
    def __init__(self, prefix: str = "banditq") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self.counters: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        self.hist: dict[str, list[float]] = {}
        #: bucket bounds per histogram (default ``BUCKETS_MS``)
        self.buckets: dict[str, tuple[float, ...]] = {}

    def inc(self, name: str, n: float = 1.0) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0.0) + n

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self.gauges[name] = value

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            bounds = self.buckets.get(name, BUCKETS_MS)
            h = self.hist.setdefault(name, [0.0] * (len(bounds) + 2))
            for i, b in enumerate(bounds):
                if value <= b:
                    h[i] += 1
            h[-2] += 1  # count
            h[-1] += value  # sum

    def render(self) -> str:
        p = self.prefix
        lines: list[str] = []
        with self._lock:
            for k, v in sorted(self.counters.items()):
                lines += [f"# TYPE {p}_{k}_total counter", f"{p}_{k}_total {v:g}"]
            for k, v in sorted(self.gauges.items()):
                lines += [f"# TYPE {p}_{k} gauge", f"{p}_{k} {v:g}"]
            for k, h in sorted(self.hist.items()):
                lines.append(f"# TYPE {p}_{k} histogram")
                for b, c in zip(self.buckets.get(k, BUCKETS_MS), h, strict=False):
                    lines.append(f'{p}_{k}_bucket{{le="{b:g}"}} {c:g}')
                lines.append(f'{p}_{k}_bucket{{le="+Inf"}} {h[-2]:g}')
                lines += [f"{p}_{k}_count {h[-2]:g}", f"{p}_{k}_sum {h[-1]:g}"]
        return "\n".join(lines) + "\n"

    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        """Serve ``/metrics`` on a daemon thread; returns the server (``.shutdown()`` stops)."""
        return Metrics.serve_render(self.render, port, host)

    @staticmethod
    def serve_render(
        render: Callable[[], str], port: int, host: str = "127.0.0.1"
    ) -> ThreadingHTTPServer:
        """Serve what ``render`` returns at ``/metrics`` (404 elsewhere) on a daemon thread."""

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                ok = self.path.startswith("/metrics")
                body = render().encode() if ok else b"not found: try /metrics\n"
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server
