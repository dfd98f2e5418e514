"""The two browser endpoints of the EHR launch: ``/smart/launch`` and ``/smart/callback``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_GET

from cds.smart import services
from cds.smart.errors import LaunchRefused


def _refused(request: HttpRequest, refused: LaunchRefused, **details: str) -> HttpResponse:
    services.launch_audit(
        request=request, outcome=refused.reason, ehr=refused.ehr, details={**refused.details, **details}
    )
    return render(request, "smart/refused.html", {"message": refused.message}, status=refused.status)


@require_GET
def launch_view(request: HttpRequest) -> HttpResponse:
    """Start an EHR launch: only a registered ``iss`` is contacted or redirected to (no open redirect)."""
    iss = request.GET.get("iss", "")
    try:
        url = services.launch_begin(session=request.session, iss=iss, launch=request.GET.get("launch", ""))
    except LaunchRefused as refused:
        return _refused(request, refused, iss=iss[:500])
    return HttpResponseRedirect(url)


@require_GET
def callback_view(request: HttpRequest) -> HttpResponse:
    """Finish the launch: log the mapped clinician in and open the review (or the patient's worklist)."""
    try:
        launched = services.launch_complete(
            session=request.session,
            state=request.GET.get("state", ""),
            code=request.GET.get("code", ""),
            error=request.GET.get("error", ""),
        )
    except LaunchRefused as refused:
        return _refused(request, refused)
    services.clinician_login(request=request, launched=launched)
    services.launch_audit(
        request=request,
        outcome="success",
        ehr=launched.ehr,
        user=launched.user,
        details={
            "fhir_user": launched.fhir_user,
            "patient": launched.patient_id[:64],
            "review": str(launched.review.pk) if launched.review else "",
        },
    )
    return HttpResponseRedirect(launched.url)
