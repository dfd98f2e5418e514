"""OpenTelemetry traces (issue 16): FHIR request → Celery task → Triton call, one trace per ECG.

Off unless ``TRACING_ENABLED``; then spans go by OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the
exporter's own standard variable, e.g. ``http://otel-collector:4318``), batched in the background.
The web process instruments Django (server spans) and Celery publishing (the trace context travels
in the task's message headers); each worker process instruments the task runs. The Triton client
opens its own span (``inference.triton_client``) through the OpenTelemetry API, a no-op when
nothing is configured. Span attributes carry route patterns, task names and model names, never
patient data (Django's instrumentation records no query strings or bodies by default).
"""

from __future__ import annotations

import logging

from django.conf import settings

logger = logging.getLogger(__name__)
_configured = False


def tracing_setup(*, service: str, django: bool) -> bool:
    """Install the tracer provider and the instrumentations for this process; return whether tracing is on.

    Call once per process after forking (gunicorn workers import the WSGI module themselves;
    Celery pool processes call it from ``worker_process_init``). ``django``: also trace requests.
    """
    global _configured
    if not settings.TRACING_ENABLED or _configured:
        return _configured
    # Imported here: the SDK and exporter threads are not started by processes that trace nothing.
    from opentelemetry import trace  # noqa: PLC0415 optional, see above
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    from opentelemetry.instrumentation.celery import CeleryInstrumentor  # noqa: PLC0415
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    provider = TracerProvider(resource=Resource.create({"service.name": f"{settings.TRACING_SERVICE_NAME}-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if django:
        from opentelemetry.instrumentation.django import DjangoInstrumentor  # noqa: PLC0415

        DjangoInstrumentor().instrument()
    CeleryInstrumentor().instrument()
    _configured = True
    logger.info("tracing on: %s-%s", settings.TRACING_SERVICE_NAME, service)
    return True


def tracing_flush() -> None:
    """Export the spans still buffered (a pool process about to exit)."""
    if not _configured:
        return
    from opentelemetry import trace  # noqa: PLC0415 optional, see tracing_setup

    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush(timeout_millis=5000)
