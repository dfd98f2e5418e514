"""Validate incoming resources with the FHIR R4 (R4B) models, translating errors to OperationOutcome.

``fhir.resources``' default models are R5 and would reject R4 SampledData, hence ``R4B``.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.conf import settings
from pydantic import ValidationError

from cds.core.exceptions import FhirError, FhirIssue

# What clients may create; a DocumentReference must carry an ECG document (docs/fhir.md "Accepted ECG formats").
SUPPORTED_TYPES = ("Patient", "Observation", "DocumentReference")
# What /fhir serves read-only: the results the service writes for each analysed ECG.
READABLE_TYPES = (*SUPPORTED_TYPES, "DiagnosticReport", "Task", "Device", "Provenance")
_R5_ONLY_SAMPLED_DATA = {"interval", "intervalUnit", "codeMap", "offsets"}
_ISSUE_CODE_BY_ERROR = {"missing": "required", "extra_forbidden": "structure"}


def fhirpath(resource_type: str, location: tuple[int | str, ...]) -> str:
    """Return a FHIRPath such as ``Observation.component[3].valueSampledData.period``."""
    path = resource_type
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "__root__":
            path += f".{part}"
    return path


def _model_class(resource_type: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, resource_type)


def resource_validate(content: dict[str, Any], *, expected_type: str | None, prefix: str = "") -> str:
    """Check a resource's type and structure; return its resourceType.

    Raises FhirError (400) naming each offending element; a ``prefix`` (``Bundle.entry[2].resource``)
    makes expressions point inside a Bundle.
    """
    resource_type = content.get("resourceType")
    where = f"{prefix}." if prefix else ""
    if not isinstance(resource_type, str) or not resource_type:
        raise FhirError.single(400, "required", "resourceType is missing", f"{where}resourceType")
    if expected_type is not None and resource_type != expected_type:
        raise FhirError.single(
            400,
            "invalid",
            f"resourceType {resource_type!r} does not match the URL's {expected_type!r}",
            f"{where}resourceType",
        )
    if resource_type not in SUPPORTED_TYPES:
        raise FhirError.single(
            422, "not-supported", f"resource type {resource_type!r} cannot be created here", f"{where}resourceType"
        )
    _check_bounds(content, f"{prefix or resource_type}")  # before the model parses thousands of elements
    try:
        _model_class(resource_type).model_validate(content)
    except ValidationError as exc:
        raise FhirError(status=400, issues=[_issue(resource_type, err, prefix) for err in exc.errors()[:20]]) from None
    return resource_type


# The search index stores each token in a varchar(255); longer values would fail at INSERT as a
# PostgreSQL DataError (a 500) after the resource row was written. Few identifiers per resource
# keep the index (and a conditional match's OR) small.
MAX_TOKEN_CHARS = 255
MAX_IDENTIFIERS = 20
# 12 leads in a few chunks each; far more components is no ECG and only costs decoding time.
MAX_COMPONENTS = 240
# An ECG has at most the 12 standard leads (cds.ecg.leads, which this layer may not import).
MAX_LEADS = 12


def max_samples_per_lead() -> int:
    """Return the most samples one lead may carry: the longest recording at the highest rate accepted."""
    return int(settings.ECG_MAX_SECONDS * settings.ECG_MAX_RATE_HZ)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []  # anything else: the model refuses it next


def _check_bounds(content: dict[str, Any], where: str) -> None:
    """Refuse (400) too many components or identifiers, and tokens the search index cannot hold."""
    components = _list(content.get("component"))
    if len(components) > MAX_COMPONENTS:
        raise FhirError.single(
            400, "too-costly", f"{len(components)} components; at most {MAX_COMPONENTS}", f"{where}.component"
        )
    _check_sample_counts(components, where)
    identifiers = _list(content.get("identifier"))
    if len(identifiers) > MAX_IDENTIFIERS:
        raise FhirError.single(
            400, "too-costly", f"{len(identifiers)} identifiers; at most {MAX_IDENTIFIERS}", f"{where}.identifier"
        )
    tokens = [(f"{where}.identifier[{i}]", item, ("system", "value")) for i, item in enumerate(identifiers)]
    code = content.get("code")
    codings = _list(code.get("coding")) if isinstance(code, dict) else []
    tokens += [(f"{where}.code.coding[{i}]", item, ("system", "code")) for i, item in enumerate(codings)]
    for path, item, elements in tokens:
        for element in elements:
            value = item.get(element) if isinstance(item, dict) else None
            if isinstance(value, str) and len(value) > MAX_TOKEN_CHARS:
                raise FhirError.single(
                    400,
                    "value",
                    f"{element} has {len(value)} characters; at most {MAX_TOKEN_CHARS}",
                    f"{path}.{element}",
                )


def _check_sample_counts(components: list[Any], where: str) -> None:
    """Refuse (400) SampledData with more values than an accepted ECG can have, before decoding any.

    Counting the separators of the ``data`` string costs no memory; splitting and converting it
    costs about 20 times its size, which is the work this check keeps a too-long recording from.
    A component's values per channel (values / ``dimensions``) and the resource's values in all are
    bounded; the decoder checks the exact rate and duration afterwards.
    """
    per_lead = max_samples_per_lead()
    total = 0
    for index, component in enumerate(components):
        sampled = component.get("valueSampledData") if isinstance(component, dict) else None
        if not isinstance(sampled, dict) or not isinstance(data := sampled.get("data"), str):
            continue  # no data, or the wrong type: the model or the decoder refuses it next
        dimensions = sampled.get("dimensions")
        channels = dimensions if isinstance(dimensions, int) and 1 <= dimensions <= MAX_LEADS else 1
        count = data.count(" ") + 1  # an upper bound: doubled or edge spaces are refused at decoding
        if count > per_lead * channels:
            raise FhirError.single(
                400,
                "too-costly",
                f"{count} data values for {channels} channel(s); at most {per_lead} per lead "
                f"(ECG_MAX_SECONDS × ECG_MAX_RATE_HZ)",
                f"{where}.component[{index}].valueSampledData.data",
            )
        total += count
        if total > per_lead * MAX_LEADS:
            raise FhirError.single(
                400,
                "too-costly",
                f"more than {per_lead * MAX_LEADS} data values in all; at most {per_lead} for each of {MAX_LEADS} leads",
                f"{where}.component[{index}].valueSampledData.data",
            )


def _issue(resource_type: str, error: Any, prefix: str) -> FhirIssue:
    location = tuple(error.get("loc", ()))
    expression = fhirpath(resource_type, location)
    if prefix:
        expression = prefix + expression[len(resource_type) :]
    message = str(error.get("msg", "invalid"))
    if location and location[-1] in _R5_ONLY_SAMPLED_DATA and "valueSampledData" in location:
        message = f"{location[-1]} is an R5 SampledData element; FHIR R4 uses period (milliseconds)"
    return FhirIssue(
        code=_ISSUE_CODE_BY_ERROR.get(str(error.get("type")), "value"),
        diagnostics=f"{expression}: {message}",
        expression=(expression,),
    )
