"""Invocations as OpenTelemetry spans, exported over OTLP (HTTP/protobuf) when an endpoint is set.

Each invocation whose trace is sampled becomes a span named after its function, with the phases
Lambda's X-Ray segments show as children: ``Initialization`` (a cold start's init), ``Invocation``
(the handler) and ``Overhead`` (the rest: routing, the lease, the response), and for an
asynchronous invocation ``Queued`` (from the 202 to the attempt). Attributes follow OpenTelemetry's
FaaS conventions (``faas.name``, ``faas.version``, ``faas.coldstart``, ``faas.invocation_id``,
``cloud.resource_id``).

The trace is Lambda's: the ``X-Amzn-Trace-Id`` the invocation ran with (``squall/invoke/trace.py``)
— its ``Root`` is the trace id (``1-5759e988-bd862e3fe1be46a994272793`` → ``5759e988bd862e3fe1be46a994272793``)
and its ``Parent`` the parent span — so the spans of a chain of invocations (a function invoking
another through boto3, which sends its ``_X_AMZN_TRACE_ID``) share one trace. Only sampled traces
(``Sampled=1``) are exported: a function with ``TracingConfig`` ``Active`` samples the traces it
starts or receives undecided; ``PassThrough`` follows its caller.

The spans are built after the invocation, from ``InvocationFinished``, with their real start and
end times: nothing is added to the invoke path but reading the clock.
"""

from __future__ import annotations

import logging
from typing import Any

from squall.engine.bus import InvocationFinished
from squall.invoke.trace import parse

log = logging.getLogger("squall.tracing")

_NS = 1_000_000


def sampled(header: str | None) -> bool:
    return bool(header) and "Sampled=1" in header  # type: ignore[operator]


def trace_ids(header: str) -> tuple[int, int | None] | None:
    """(trace id, parent span id) of an X-Amzn-Trace-Id, as OpenTelemetry's integers."""
    fields = parse(header)
    root = fields.get("Root", "")
    parts = root.split("-")
    if len(parts) != 3 or parts[0] != "1" or len(parts[1]) != 8 or len(parts[2]) != 24:
        return None
    try:
        trace_id = int(parts[1] + parts[2], 16)
        parent = int(fields["Parent"], 16) if len(fields.get("Parent", "")) == 16 else None
    except ValueError:
        return None
    return trace_id, parent


class Tracing:
    """``endpoint``: the OTLP/HTTP collector (``http://host:4318``; traces go to ``/v1/traces``).
    ``exporter``: a span exporter to use instead (tests)."""

    def __init__(self, endpoint: str | None, service_name: str = "squall", exporter: Any = None) -> None:
        self.enabled = bool(endpoint or exporter)
        self.exported = 0
        self._provider: Any = None
        self._tracer: Any = None
        if not self.enabled:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")  # type: ignore[union-attr]
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self._provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        self._tracer = self._provider.get_tracer("squall")

    def record(self, e: InvocationFinished, function_arn: str) -> None:
        if not self.enabled or not sampled(e.trace):
            return
        from opentelemetry import trace as otel
        from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

        ids = trace_ids(e.trace or "")
        context = None
        if ids is not None:
            trace_id, parent = ids
            parent_context = SpanContext(trace_id, parent or 1, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
            context = otel.set_span_in_context(NonRecordingSpan(parent_context))
        end = int(e.finished_at * 1e9)
        start = int(e.started_at * 1e9)
        duration = int(e.duration_ms * _NS)
        attributes = {"faas.name": e.function, "faas.version": e.version, "faas.invocation_id": e.request_id,
                      "faas.coldstart": e.init_duration_ms is not None, "faas.runtime": e.runtime,
                      "cloud.resource_id": function_arn, "cloud.provider": "squall"}
        if e.qualifier:
            attributes["aws.lambda.qualifier"] = e.qualifier
        span = self._tracer.start_span(e.function, context=context, kind=SpanKind.SERVER, start_time=start,
                                       attributes=attributes)
        inner = otel.set_span_in_context(span)
        if e.queued_at is not None and e.queued_at * 1e9 < start:
            self._tracer.start_span("Queued", context=inner, start_time=int(e.queued_at * 1e9)).end(start)
        handler_start = max(start, end - duration)
        init_end = start
        if e.init_duration_ms is not None:
            init_end = min(handler_start, start + int(e.init_duration_ms * _NS))
            self._tracer.start_span("Initialization", context=inner, start_time=start).end(init_end)
        if handler_start > init_end:
            self._tracer.start_span("Overhead", context=inner, start_time=init_end).end(handler_start)
        invocation = self._tracer.start_span("Invocation", context=inner, start_time=handler_start)
        if e.error_type:
            invocation.set_status(Status(StatusCode.ERROR, e.error_type))
            span.set_status(Status(StatusCode.ERROR, e.error_type))
            span.set_attribute("error.type", e.error_type)
        invocation.end(end)
        span.end(end)
        self.exported += 1

    def shutdown(self) -> None:
        """Flush what is still buffered (at server stop)."""
        if self._provider is not None:
            try:
                self._provider.shutdown()
            except Exception as exc:  # a collector away at shutdown loses the last spans, said once
                log.warning("could not flush the last spans to the OTLP collector: %s", exc)
