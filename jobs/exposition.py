"""What a `dramatiq jobs` worker serves over HTTP: /metrics for Prometheus, /health for its
container's health check.

dramatiq's Prometheus middleware asks the `dramatiq` command to fork one process that
serves every worker process's figures (its `forks`). `WorkerMetrics` keeps the middleware
and forks `serve_metrics` instead of dramatiq's server, which bound 0.0.0.0 and died on a
port in use. This one listens on HERALD_METRICS_HOST:HERALD_METRICS_PORT (127.0.0.1:9191),
answers /health from `jobs.health.HealthCheck` (200, or 503 with the sentence saying which
of the broker and the database does not answer), and when the port is taken says so in one
line and takes the port once it is free.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dramatiq.middleware.prometheus import DB_PATH, Prometheus

log = logging.getLogger("herald.metrics")
PORT_RETRY_S = 30.0


class WorkerMetrics(Prometheus):
    """dramatiq's Prometheus middleware, with herald's server forked instead of dramatiq's."""

    @property
    def forks(self) -> list:
        return [serve_metrics]


def serve_metrics() -> int:
    """The `dramatiq` command's metrics process: serve /metrics and /health until stopped."""
    from models.logs import configure_logging
    from models.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    server = bind(settings.metrics_host, settings.metrics_port)
    if server is None:
        return 1
    log.debug("metrics and health at http://%s:%s/metrics and /health", *server.server_address[:2])
    server.serve_forever()
    return 0


def bind(host: str, port: int, retry_s: float = PORT_RETRY_S) -> ThreadingHTTPServer | None:
    """A server on host:port; a port in use is said once and tried again every `retry_s`
    (another worker may be leaving it); None when the address cannot be used at all."""
    said = False
    while True:
        try:
            return _Server((host, port), _Handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                log.error("cannot serve metrics on %s:%s (%s); set HERALD_METRICS_HOST and "
                          "HERALD_METRICS_PORT to an address of this host.", host, port,
                          exc.strerror or exc)
                return None
            if not said:
                log.error("metrics port %s is in use (another worker?); set HERALD_METRICS_PORT "
                          "to a free port for each worker on this host. Until it is free, this "
                          "worker serves no /metrics or /health.", port)
                said = True
        time.sleep(retry_s)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        from jobs.health import HealthCheck
        from models.settings import get_settings

        self.health = HealthCheck(get_settings())


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path == "/health":
            status, text = self.server.health.answer()
            self._send(status, "text/plain; charset=utf-8", (text + "\n").encode())
        elif path in ("/metrics", "/"):
            self._send(200, *_exposition())
        else:
            self._send(404, "text/plain; charset=utf-8", b"/metrics or /health\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        """Requests are not logged: a scrape every 15 s is not news."""


def _exposition() -> tuple[str, bytes]:
    """Every worker process's figures, summed from dramatiq's multiprocess directory."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", DB_PATH)  # before prometheus_client loads
    import prometheus_client
    from prometheus_client import multiprocess

    registry = prometheus_client.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=DB_PATH)
    return prometheus_client.CONTENT_TYPE_LATEST, prometheus_client.generate_latest(registry)
