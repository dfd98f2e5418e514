"""Registering EHRs and mapping their clinicians (management commands; admins do the same in the admin)."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from cds.core.services import organization_get_or_create
from cds.smart.models import SmartClinician, SmartEhr
from tests.conftest import ORGANIZATION

pytestmark = pytest.mark.django_db
ISS = "https://ehr.example.org/fhir"


def test_register_an_ehr_and_map_a_clinician(clinician: Any) -> None:
    organization_get_or_create(slug=ORGANIZATION)
    out = StringIO()
    call_command("smart_register_ehr", ISS + "/", "our-client", ORGANIZATION, name="Example EHR", stdout=out)
    call_command("smart_map_clinician", ISS, "Practitioner/42", clinician.user.username, stdout=out)

    ehr = SmartEhr.objects.get()
    assert (ehr.iss, ehr.client_id, ehr.organization.slug, ehr.is_active) == (ISS, "our-client", ORGANIZATION, True)
    mapping = SmartClinician.objects.get()
    # A relative fhirUser is stored resolved against the EHR's FHIR base, as launches compare it.
    assert (mapping.fhir_user, mapping.user) == (f"{ISS}/Practitioner/42", clinician.user)

    call_command("smart_register_ehr", ISS, "new-client", ORGANIZATION, "--inactive", stdout=out)
    ehr.refresh_from_db()
    assert (SmartEhr.objects.count(), ehr.client_id, ehr.is_active) == (1, "new-client", False)


def test_registration_errors_are_clear_and_store_nothing(clinician: Any) -> None:
    organization_get_or_create(slug=ORGANIZATION)
    with pytest.raises(CommandError, match="no organisation 'nowhere'"):
        call_command("smart_register_ehr", ISS, "c", "nowhere")
    with pytest.raises(CommandError, match="invalid EHR registration"):
        call_command("smart_register_ehr", "not a url", "c", ORGANIZATION)
    assert not SmartEhr.objects.exists()
    with pytest.raises(CommandError, match="unknown EHR or user"):
        call_command("smart_map_clinician", ISS, "Practitioner/1", clinician.user.username)
    call_command("smart_register_ehr", ISS, "c", ORGANIZATION, stdout=StringIO())
    with pytest.raises(CommandError, match="unknown EHR or user"):
        call_command("smart_map_clinician", ISS, "Practitioner/1", "no-such-user")
    assert not SmartClinician.objects.exists()


def test_the_admin_lists_registered_ehrs(admin_client: Any) -> None:
    organization, _ = organization_get_or_create(slug=ORGANIZATION)
    SmartEhr.objects.create(iss=ISS, client_id="c", organization=organization)
    page = admin_client.get("/admin/smart/smartehr/")
    assert page.status_code == 200 and ISS in page.content.decode()
    assert admin_client.get("/admin/smart/smartclinician/add/").status_code == 200
