"""The listener of ``[monitor] metrics_port``: the master serves every worker's metrics there.

With a metrics port the metrics path leaves the main server, as in nFlow Runtime, whose
``metrics_port`` starts a plain HTTP server of its own. Here the master answers it: it
outlives any worker and reads the same metrics directory every worker writes, so a scrape
sums all of them whatever worker is busy. prometheus_client is imported at the first scrape,
not before, which keeps a master that is never scraped as small as one without the port.
"""

from __future__ import annotations

__all__ = ["MetricsListener"]

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("nflow.server")


class MetricsListener:
    """An HTTP server on ``host:port`` answering ``GET path`` with the summed metrics."""

    def __init__(self, *, host: str, port: int, path: str, directory: str) -> None:
        self.path = path
        self.directory = directory
        listener = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "nflow-metrics"

            def do_GET(self) -> None:
                listener.answer(self, body=True)

            def do_HEAD(self) -> None:
                listener.answer(self, body=False)

            def log_message(self, format: str, *args: object) -> None:
                # Scrapes every few seconds would flood the log; errors are logged by answer().
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="nflow-metrics-port", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, *, body: bool) -> None:
        if handler.path.split("?", 1)[0] != self.path:
            self._send(handler, 404, b"not found: metrics are at " + self.path.encode(), body)
            return
        try:
            from nflow.observability import render_metrics

            text, content_type = render_metrics(self.directory)
        except Exception:
            log.exception("metrics port: rendering the metrics failed")
            self._send(handler, 500, b"metrics unavailable; see the server log", body)
            return
        self._send(handler, 200, text, body, content_type)

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        text: bytes,
        body: bool,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(text)))
        handler.end_headers()
        if body:
            handler.wfile.write(text)
