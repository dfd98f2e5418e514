"""EHRs allowed to launch the review page (SMART EHR launch) and their clinicians' accounts here."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django_otp.models import Device

from cds.core.models import BaseModel, Organization


class SmartEhr(BaseModel):
    """An EHR that may launch us: its FHIR base (the launch's ``iss``) and the client_id it gave us.

    Only a registered, active ``iss`` is ever contacted or redirected to: the launch URL is public,
    so an unregistered ``iss`` would make us an open redirector (and a fetcher of any URL).
    """

    iss = models.URLField(max_length=500, unique=True, help_text="The EHR's FHIR base URL, exactly as it sends `iss`.")
    client_id = models.CharField(max_length=200, help_text="The client_id the EHR registered us under.")
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name = "SMART EHR"

    def __str__(self) -> str:
        return self.name or self.iss


class SmartClinician(BaseModel):
    """One clinician of an EHR (their ``fhirUser``) mapped to a Django user; never created automatically."""

    ehr = models.ForeignKey(SmartEhr, on_delete=models.CASCADE, related_name="clinicians")
    # Absolute URL of the Practitioner (a relative fhirUser is resolved against the EHR's iss).
    fhir_user = models.URLField(max_length=500)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="smart_identities")

    class Meta:
        verbose_name = "SMART clinician mapping"
        constraints = [models.UniqueConstraint(fields=["ehr", "fhir_user"], name="smart_clinician_unique")]

    def __str__(self) -> str:
        return f"{self.fhir_user} → {self.user}"


class SmartLaunchDevice(Device):
    """The EHR's sign-in standing in for the TOTP second factor (``SMART_LAUNCH_SATISFIES_OTP``).

    django-otp marks a session verified by the device it was verified with; a launched session is
    verified by this one. It accepts no token, so it can never be used on the OTP login form.
    """

    ehr: models.ForeignKey[SmartEhr, SmartEhr] = models.ForeignKey(SmartEhr, on_delete=models.CASCADE, related_name="+")

    def verify_token(self, token: str) -> bool:
        return False
