"""Clinician login: strong passwords, 30-minute idle sessions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("password", ["short-pw1", "password12345", "123456789012345", "senior-clinician"])
def test_it_refuses_weak_passwords(senior_clinician: Any, password: str) -> None:
    senior_clinician.user.first_name = "clinician"
    with pytest.raises(ValidationError):
        validate_password(password, user=senior_clinician.user)


def test_it_accepts_a_long_uncommon_password(senior_clinician: Any) -> None:
    validate_password("amber-tractor-violin-42", user=senior_clinician.user)


def test_it_ends_a_session_after_30_idle_minutes_and_renews_it_on_each_request(senior_clinician: Any) -> None:
    client = Client()
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        client.force_login(senior_clinician.user)
        assert client.get("/admin/review/review/").status_code == 200
        clock.move_to(start + timedelta(minutes=25))
        assert client.get("/admin/review/review/").status_code == 200  # activity renews the session
        clock.move_to(start + timedelta(minutes=50))
        assert client.get("/admin/review/review/").status_code == 200  # 25 idle minutes since the last request
        clock.move_to(start + timedelta(minutes=81))
        response = client.get("/admin/review/review/")
    assert response.status_code == 302 and "/login/" in response["Location"]
