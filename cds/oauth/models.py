"""Integration clients that obtain OAuth2 access tokens with the client-credentials grant."""

from __future__ import annotations

from typing import Any

from django.db import models

from cds.core.models import Organization
from cds.oauth.jwks import jwks_validate
from cds.oauth.scopes import scopes_split, scopes_validate


class ApiClient(models.Model):
    """A system (EHR integration engine, reporting tool) allowed to call the FHIR API.

    A client authenticates at the token endpoint in one of two ways:

    - ``private_key_jwt`` (SMART Backend Services): a JWT assertion signed with a private key whose
      public half is in ``jwks`` (looked up by ``kid``; rotate by adding the new key, then removing
      the old one);
    - ``client_secret`` (only where ``OAUTH_ALLOW_CLIENT_SECRET``): the secret, kept only as a Django
      password hash: it is shown once, by ``manage.py create_api_client``, and cannot be recovered
      afterwards, only replaced. Clients registered with a JWKS get an unusable hash.
    """

    class AuthMethod(models.TextChoices):
        PRIVATE_KEY_JWT = "private_key_jwt", "Signed JWT (SMART Backend Services)"
        # The label avoids the word "secret": the admin shows no secret, not even the word.
        CLIENT_SECRET = "client_secret", "Shared key (legacy)"

    name = models.CharField(max_length=200)
    # The tenant whose data this client sends and reads; it sees nothing of other organisations.
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="api_clients")
    # unique=True gives the index that token issue and every authenticated request look up by.
    client_id = models.CharField(max_length=64, unique=True, editable=False)
    secret_hash = models.CharField(max_length=256, editable=False)
    auth_method = models.CharField(max_length=32, choices=AuthMethod.choices, default=AuthMethod.CLIENT_SECRET)
    # A JWK Set ({"keys": [...]}) of public keys; the private halves never reach us.
    jwks = models.JSONField(default=dict, blank=True, validators=[jwks_validate])
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

    def jwk_for(self, kid: str) -> dict[str, Any] | None:
        """Return the registered public key with key id ``kid``, or None."""
        keys = self.jwks.get("keys", []) if isinstance(self.jwks, dict) else []
        return next((k for k in keys if isinstance(k, dict) and k.get("kid") == kid), None)


class UsedAssertion(models.Model):
    """A client assertion ``jti`` already exchanged for a token: a second use is a replay.

    Rows are kept until the assertion expires (after that its ``exp`` refuses it anyway) and then
    purged by the token endpoint.
    """

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    # Indexed for the purge of expired rows that runs with every assertion.
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            # The replay check is this constraint: two concurrent uses of one jti cannot both insert.
            models.UniqueConstraint(fields=["client", "jti"], name="oauth_usedassertion_client_jti"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id}/{self.jti}"
