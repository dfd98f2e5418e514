"""Request ids and request metrics (issue 16): first middleware in ``settings.MIDDLEWARE``.

Each request gets an id: the caller's ``X-Request-ID`` when it is a plain token (a proxy or the EHR
already set one, so its logs and ours join up), else a new one. The id is bound to every log line
written while the request runs, sent back in ``X-Request-ID``, and carried into the Celery tasks the
request enqueues (``cds.celery``), so a job's worker log lines name the request that sent its ECG.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from cds.core.logging import log_context_bind, log_context_reset
from cds.core.metrics import HTTP_REQUEST_SECONDS

REQUEST_ID_HEADER = "X-Request-ID"
# Anything else (spaces, quotes, very long values) is replaced: ids go into logs and headers as-is.
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_for(request: HttpRequest) -> str:
    """Return the caller's request id when well-formed, else a new random one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _VALID_ID.fullmatch(given) else uuid.uuid4().hex


class RequestContextMiddleware:
    """Bind a request id to the request's log lines, echo it, and time the request by route pattern."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = request_id_for(request)
        token = log_context_bind(request_id=request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            log_context_reset(token)
        response[REQUEST_ID_HEADER] = request_id
        # The route pattern (fhir/<str:resource_type>/<str:logical_id>), never the path: paths carry ids.
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        HTTP_REQUEST_SECONDS.labels(request.method or "", route, f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started
        )
        return response
