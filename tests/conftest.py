"""Shared fixtures: personas (API clients with different scopes) and sample ECGs.

Clinician, auditor and care-team personas arrive with the review issue; today's personas are the
integration clients that talk FHIR to us.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = REPO_ROOT / "samples" / "ptbxl"
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


# The organisation (tenant) of the personas and of the care teams; tenancy tests add OTHER_ORGANIZATION.
ORGANIZATION = "org-a"
OTHER_ORGANIZATION = "org-b"


def api_client_token(client: Client, scopes: str, organization: str = ORGANIZATION) -> str:
    """Create an API client of ``organization`` with ``scopes`` through the management command; return a token."""
    out = io.StringIO()
    call_command("create_api_client", f"test-{scopes[:20]}", scopes=scopes, organization=organization, stdout=out)
    credentials = json.loads(out.getvalue())
    form = {
        "grant_type": "client_credentials",
        "client_id": credentials["client_id"],
        "client_secret": credentials["client_secret"],
    }
    response = client.post("/auth/token", urlencode(form), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.content
    return str(response.json()["access_token"])


class FhirTestClient:
    """A Django test client that speaks FHIR JSON with a bearer token."""

    def __init__(self, client: Client, token: str | None) -> None:
        self.client = client
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def post(self, path: str, body: Any, content_type: str = "application/fhir+json", **headers: str) -> Any:
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return self.client.post(path, data=data, content_type=content_type, **self.headers, **headers)

    def get(self, path: str, **headers: str) -> Any:
        return self.client.get(path, **self.headers, **headers)


@pytest.fixture
def service_account(db: None, client: Client) -> FhirTestClient:
    """Persona: the EHR's integration engine, allowed to create, read and search everything."""
    return FhirTestClient(client, api_client_token(client, "system/*.cruds"))


@pytest.fixture
def read_only_client(db: None, client: Client) -> FhirTestClient:
    """Persona: a reporting tool that may only read and search."""
    return FhirTestClient(Client(), api_client_token(client, "system/*.rs"))


@pytest.fixture
def anonymous(client: Client) -> FhirTestClient:
    """Persona: anyone without a credential."""
    return FhirTestClient(client, None)


def read_sample_record(ecg_id: int, rate: int = 500) -> tuple[np.ndarray, dict[str, Any]]:
    """Return a committed PTB-XL sample as ``(samples_uv (12, n), header)`` using the WFDB reader."""
    import wfdb

    folder = "records500" if rate == 500 else "records100"
    suffix = "hr" if rate == 500 else "lr"
    record = wfdb.rdrecord(str(SAMPLES_DIR / folder / "00000" / f"{ecg_id:05d}_{suffix}"))
    # PTB-XL stores 1000 ADC units per mV: digital values are exact microvolts.
    digital = record.adc() if record.d_signal is None else record.d_signal
    baseline = np.asarray(record.baseline)[:, None]
    gain = np.asarray(record.adc_gain)[:, None]
    samples_uv = (digital.T - baseline) / gain * 1000.0
    return samples_uv.astype(np.float32), {"fs": record.fs, "leads": record.sig_name}


@pytest.fixture
def ecg_factory() -> Callable[..., dict[str, Any]]:
    """Return a builder of ECG Observations from the committed samples (500 Hz, 12 leads)."""
    from cds.ecg.encoding import ecg_observation

    def build(ecg_id: int = 9, identifier: str | None = None, **kwargs: Any) -> dict[str, Any]:
        samples, header = read_sample_record(ecg_id)
        return ecg_observation(
            samples,
            sample_rate_hz=header["fs"],
            leads=LEADS_12,
            identifier=("urn:oid:1.2.3.4.ecg", identifier or f"ecg-{ecg_id}"),
            effective=kwargs.pop("effective", "2024-03-01T10:00:00Z"),
            **kwargs,
        )

    return build


@pytest.fixture
def patient_resource() -> dict[str, Any]:
    """Return a Patient as an EHR sends it."""
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3.4.mrn", "value": "MRN-0001"}],
        "gender": "female",
        "birthDate": "1968-05",
    }


@pytest.fixture
def live_stack(tmp_path: Path) -> Iterator[Any]:
    """Start gunicorn and a Celery worker on the test database (see ``tests/livestack.py``)."""
    from tests.livestack import LiveStack

    stack = LiveStack(tmp_path)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


# --- Review personas (issue 6): admin users in role groups, on or off a source's care team. ---
CARE_TEAM_SOURCE = "ward-a"  # the source (EcgRecording.received_from) the clinicians' care team covers
OTHER_SOURCE = "ward-b"


class Persona:
    """An admin user in a role group with a logged-in Django test client."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self.client = Client()
        self.client.force_login(user)


def _persona(username: str, role: str, sources: tuple[str, ...] = ()) -> Persona:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from cds.review.models import CareTeam, CareTeamSource
    from cds.review.roles import roles_setup

    if not Group.objects.filter(name=role).exists():
        roles_setup()
    user = get_user_model().objects.create_user(username, password="pw-" + username, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    from cds.core.services import organization_get_or_create

    organization, _ = organization_get_or_create(slug=ORGANIZATION)
    for source in sources:
        team, _ = CareTeam.objects.get_or_create(name=f"team {source}", defaults={"organization": organization})
        CareTeamSource.objects.get_or_create(team=team, source=source)
        team.members.add(user)
    return Persona(user)


@pytest.fixture
def clinician(db: None) -> Persona:
    """Persona: a clinician on the care team of ward-a (reviews, cannot sign)."""
    return _persona("clin", "clinician", (CARE_TEAM_SOURCE,))


@pytest.fixture
def senior_clinician(db: None) -> Persona:
    """Persona: a senior clinician on the care team of ward-a (can sign)."""
    return _persona("senior", "senior clinician", (CARE_TEAM_SOURCE,))


@pytest.fixture
def outside_clinician(db: None) -> Persona:
    """Persona: a clinician whose care team covers ward-b only."""
    return _persona("outsider", "clinician", (OTHER_SOURCE,))


@pytest.fixture
def auditor(db: None) -> Persona:
    """Persona: a quality auditor (read-only on clinical data, sees every source)."""
    return _persona("auditor", "quality auditor")


@pytest.fixture
def integration_user(db: None) -> Persona:
    """Persona: a staff user in the integration-client group (API only: no admin permission)."""
    return _persona("integration", "integration client")
