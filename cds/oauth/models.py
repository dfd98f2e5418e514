"""Integration clients that obtain OAuth2 access tokens with the client-credentials grant."""

from __future__ import annotations

from django.db import models

from cds.oauth.scopes import scopes_split, scopes_validate


class ApiClient(models.Model):
    """A system (EHR integration engine, reporting tool) allowed to call the FHIR API.

    The secret is kept only as a Django password hash: it is shown once, by
    ``manage.py create_api_client``, and cannot be recovered afterwards, only replaced.
    """

    name = models.CharField(max_length=200)
    # unique=True gives the index that token issue and every authenticated request look up by.
    client_id = models.CharField(max_length=64, unique=True, editable=False)
    secret_hash = models.CharField(max_length=256, editable=False)
    scopes = models.TextField(
        validators=[scopes_validate],
        help_text="Space-separated SMART system scopes, e.g. 'system/Patient.crs system/Observation.crs'.",
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive clients get no new tokens, and their live tokens stop working."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "API client"

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    def granted_scopes(self) -> frozenset[str]:
        """Return the scopes this client may request."""
        return frozenset(scopes_split(self.scopes))
