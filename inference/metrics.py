"""Prometheus metrics of the Triton calls (issue 16), served by the worker's metrics endpoint.

Defined here, not in ``cds``, because the client that makes the calls lives in ``inference``
(which never imports ``cds``); the names share the service's ``cds_`` prefix.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TRITON_REQUEST_SECONDS = Histogram(
    "cds_triton_request_seconds",
    "Triton inference calls (including the client's own retries), by model and outcome",
    ["model", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
TRITON_ERRORS = Counter(
    "cds_triton_errors_total", "Failed Triton inference calls by model and error class", ["model", "error"]
)
