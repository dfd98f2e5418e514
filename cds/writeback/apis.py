"""``GET /.well-known/jwks.json``: the public halves of our write-back signing keys (issue 15 item 7)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from cds.writeback.keys import public_jwks

# EHRs cache the set; a short lifetime lets a newly published key reach them well before it signs
# (the rotation procedure waits longer than this between publishing and switching).
JWKS_MAX_AGE_S = 300


@csrf_exempt  # no cookie, no state change: any other method gets 405 from require_GET, not a CSRF 403
@require_GET
def jwks_view(request: HttpRequest) -> JsonResponse:
    """Return our JWK Set: public, unauthenticated (the EHR fetches it with no credential), cacheable briefly."""
    response = JsonResponse(public_jwks())
    response["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_S}"
    return response
