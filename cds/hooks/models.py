"""CDS clients (EHRs) registered to call our CDS Hooks services with signed JWTs (CDS Hooks 2.0)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models

from cds.core.models import Organization
from cds.oauth.jwks import jwks_validate


def fhir_servers_validate(value: Any) -> None:
    """Raise ``ValidationError`` unless ``value`` is a list of http(s) base URLs without query or fragment."""
    if not isinstance(value, list) or not all(isinstance(url, str) for url in value):
        raise ValidationError("fhir_servers is a JSON list of FHIR base URLs")
    for url in value:
        if not url.startswith(("https://", "http://")) or "?" in url or "#" in url:
            raise ValidationError(f"{url!r} is not an http(s) FHIR base URL (no query, no fragment)")


def fhir_base_normalize(url: str) -> str:
    """Return ``url`` as compared with the registered bases: without trailing slashes."""
    return url.rstrip("/")


class CdsClient(models.Model):
    """An EHR (CDS client) that calls our CDS services with a JWT signed by its own key.

    The client is known by ``iss``; its public keys come from ``jwks_url`` (fetched and cached) or,
    for a client that publishes none, from the inline ``jwks``. It acts for one organisation: the
    hook sees only that organisation's patients. ``fhir_servers`` are the only FHIR bases we fetch
    from when the client sends no prefetch (``fhirServer`` + ``fhirAuthorization``): anything else
    would let a caller point our server at arbitrary URLs (SSRF).
    """

    name = models.CharField(max_length=200)
    # unique=True gives the index every hook call looks the client up by.
    iss = models.CharField(max_length=255, unique=True, help_text="The client's identifier: the JWT's iss claim.")
    # A CharField with the URL validator: URLField's form field warns about Django 6's https default.
    jwks_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[URLValidator(schemes=["https", "http"])],
        help_text="Where the client publishes its public keys (JWK Set); also its jku.",
    )
    jwks = models.JSONField(
        default=dict,
        blank=True,
        validators=[jwks_validate],
        help_text="Inline public JWK Set, for a client that publishes none at a URL.",
    )
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="cds_clients")
    fhir_servers = models.JSONField(
        default=list,
        blank=True,
        validators=[fhir_servers_validate],
        help_text='FHIR base URLs we may fetch from when prefetch is missing, e.g. ["https://ehr.example/fhir"].',
    )
    is_active = models.BooleanField(default=True, help_text="Inactive clients' JWTs are refused.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "CDS client"

    def __str__(self) -> str:
        return f"{self.name} ({self.iss})"

    def clean(self) -> None:
        if not self.jwks_url and not self.jwks:
            raise ValidationError("a CDS client needs a jwks_url or an inline jwks to verify its JWTs with")

    def allows_fhir_server(self, url: str) -> bool:
        """Return whether ``url`` is one of the registered FHIR bases (trailing slashes ignored)."""
        return fhir_base_normalize(url) in {fhir_base_normalize(base) for base in self.fhir_servers}


class UsedHookJwt(models.Model):
    """A CDS client JWT ``jti`` already accepted: a second use is a replay.

    Kept until the JWT expires (its ``exp`` refuses it after that), then purged by the next call.
    """

    client = models.ForeignKey(CdsClient, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)  # indexed for the purge of expired rows

    class Meta:
        constraints = [
            # The replay check is this constraint: two concurrent uses of one jti cannot both insert.
            models.UniqueConstraint(fields=["client", "jti"], name="hooks_usedhookjwt_client_jti"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id}/{self.jti}"
