"""OpenTelemetry tracing: a server span per request, a child span per executed node.

Off by default. When ``[tracing] enabled`` is false the runtime never imports this module, the
engine's interceptor chain stays empty and the server skips the request span, so no span
object exists at all. When on, each worker process has one :class:`Tracing`:

* the server calls :meth:`Tracing.start_request` before routing and
  :meth:`RequestSpan.finish` with the response; an incoming W3C ``traceparent`` (and
  ``tracestate``) makes the span a child of the caller's, so nflow joins the caller's trace;
* :meth:`Tracing.node` is an engine interceptor: it wraps every step in a span that is the
  current span while the step runs, so the node spans are children of the request span and
  log lines written by the step (``console.*``, errors, security events) carry its ids;
* finished spans go through a batch processor to an OTLP/HTTP (protobuf) exporter; the
  runtime's ``close()`` calls :meth:`Tracing.shutdown`, which flushes what is left.

Log lines get ``trace_id`` and ``span_id`` from a log record factory installed with the first
:class:`Tracing` (records made outside a span are left alone).
"""

from __future__ import annotations

__all__ = ["RequestSpan", "Tracing", "resolve_endpoint"]

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from nflow._http import Request, Response

if TYPE_CHECKING:
    from nflow.config import TracingConfig
    from nflow.engine import StepResult
    from nflow.jsapi import RunContext
    from nflow.playbook import Node

log = logging.getLogger("nflow.tracing")

DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
# An unreachable receiver must not hold up a worker's shutdown for long.
EXPORT_TIMEOUT_SECONDS = 5.0


def resolve_endpoint(config: TracingConfig, environ: Mapping[str, str] | None = None) -> str:
    """Where spans go: ``tracing.endpoint`` when set, else the standard OTEL variables.

    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is a full URL; ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
    a base to which ``/v1/traces`` is added, as the OpenTelemetry specification says.
    """
    env = os.environ if environ is None else environ
    if "endpoint" in config.model_fields_set:
        return config.endpoint
    full = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if full:
        return full
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return base.rstrip("/") + "/v1/traces"
    return config.endpoint


class _RequestHeaders(Getter[Request]):
    def get(self, carrier: Request, key: str) -> list[str] | None:
        value = carrier.header(key)
        return [value] if value else None

    def keys(self, carrier: Request) -> list[str]:
        return [name for name, _ in carrier.header_items]


_GETTER = _RequestHeaders()
_PROPAGATOR = TraceContextTextMapPropagator()


class RequestSpan:
    """The server span of one request, current until :meth:`finish`."""

    __slots__ = ("_token", "span")

    def __init__(self, span: trace.Span, token: object) -> None:
        self.span = span
        self._token = token

    @property
    def trace_id(self) -> str:
        return format(self.span.get_span_context().trace_id, "032x")

    @property
    def span_id(self) -> str:
        return format(self.span.get_span_context().span_id, "016x")

    def finish(self, request: Request, response: Response) -> None:
        """Record the outcome, end the span and make the caller's context current again."""
        span = self.span
        try:
            if span.is_recording():
                if response.route:
                    span.update_name(f"{request.method} {response.route}")
                    span.set_attribute("http.route", response.route)
                span.set_attribute("http.response.status_code", response.status)
                if response.app:
                    span.set_attribute("nflow.app", response.app)
                if response.wid:
                    span.set_attribute("nflow.wid", response.wid)
                if response.status >= 500:
                    span.set_status(Status(StatusCode.ERROR, f"HTTP {response.status}"))
            span.end()
        finally:
            otel_context.detach(self._token)  # type: ignore[arg-type]


class Tracing:
    """One worker's tracer: request spans, the node interceptor, export and shutdown."""

    def __init__(
        self,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        service_name: str = "nflow",
        sample_ratio: float = 1.0,
        exporter: SpanExporter | None = None,
    ) -> None:
        self.endpoint = endpoint
        resource = Resource.create({"service.name": service_name})
        # A caller's sampling decision wins; a new trace is kept with the configured odds.
        sampler = ParentBased(TraceIdRatioBased(sample_ratio))
        # Not the global provider: each Runtime owns (and shuts down) its own.
        self.provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=True)
        self.provider.add_span_processor(
            BatchSpanProcessor(
                exporter or OTLPSpanExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT_SECONDS)
            )
        )
        self.tracer = self.provider.get_tracer("nflow")
        _install_log_ids()

    @classmethod
    def from_config(
        cls, config: TracingConfig, environ: Mapping[str, str] | None = None
    ) -> Tracing:
        return cls(
            endpoint=resolve_endpoint(config, environ),
            service_name=config.service_name,
            sample_ratio=config.sample_ratio,
        )

    # requests ------------------------------------------------------------------------------
    def start_request(self, request: Request) -> RequestSpan:
        """Open the server span of ``request`` (under its ``traceparent``); make it current."""
        parent = _PROPAGATOR.extract(request, getter=_GETTER) if request.header_items else None
        span = self.tracer.start_span(
            request.method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": request.method,
                "url.path": request.path,
                "url.scheme": request.scheme,
                "client.address": request.client_ip,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return RequestSpan(span, token)

    # the engine interceptor ----------------------------------------------------------------
    def node(self, ctx: RunContext, node: Node, proceed: Callable[[], StepResult]) -> StepResult:
        """One span per executed node, current while the step runs."""
        span = self.tracer.start_span(
            f"{node.type} {node.id}",
            kind=SpanKind.INTERNAL,
            attributes={
                "nflow.node.id": node.id,
                "nflow.node.type": node.type,
                "nflow.node.name": node.name,
                "nflow.app": ctx.app,
                "nflow.wid": ctx.wid,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = proceed()
        except BaseException as exc:
            if span.is_recording():
                span.set_attribute("nflow.node.next", "")
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
            raise
        else:
            if span.is_recording():
                span.set_attribute("nflow.node.next", result.next)
            return result
        finally:
            otel_context.detach(token)
            span.end()

    # life cycle ----------------------------------------------------------------------------
    def flush(self, timeout_seconds: float = EXPORT_TIMEOUT_SECONDS) -> bool:
        """Export every finished span now; False if that did not finish in time."""
        return self.provider.force_flush(int(timeout_seconds * 1000))

    def shutdown(self) -> None:
        """Flush and stop the exporter (at the runtime's close)."""
        try:
            self.provider.shutdown()
        except Exception:  # a tracing failure must never stop a worker from exiting
            log.exception("tracing shutdown failed")


_log_ids_installed = False


def _install_log_ids() -> None:
    """Give every log record made inside a span the span's ``trace_id`` and ``span_id``."""
    global _log_ids_installed
    if _log_ids_installed:
        return
    _log_ids_installed = True
    base = logging.getLogRecordFactory()
    get_current_span = trace.get_current_span

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        span_context = get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        return record

    logging.setLogRecordFactory(factory)
