"""Clinician login (issue 13, item 6): OTP required outside DEBUG (system check cds.E030), lockouts
keyed on the real client address behind the ingress (django-ipware) and on the username from any
address, and a cool-off that doubles with each further lockout of a username.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone

from cds.core.checks import check_login_second_factor

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[3]


def _fresh_settings(**env: str) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py check`` in a fresh process with DEBUG=false and ``env`` (no test defaults)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_OTP", "DEBUG"))}
    clean.update({"DEBUG": "false", "SECRET_KEY": "x" * 50, "PUBLIC_BASE_URL": "https://cds.example.org", **env})
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO, env=clean, capture_output=True, text=True, timeout=120
    )


def test_production_requires_otp_by_default_and_refuses_to_turn_it_off() -> None:
    default = _fresh_settings()
    assert default.returncode == 0, default.stderr
    assert "cds.E030" not in default.stderr + default.stdout
    off = _fresh_settings(ADMIN_OTP_REQUIRED="false")
    assert off.returncode != 0
    assert "cds.E030" in off.stderr


def test_the_check_errs_outside_debug_and_only_warns_for_a_declared_local_stack(settings: Any) -> None:
    settings.DEBUG, settings.ADMIN_OTP_REQUIRED, settings.ADMIN_OTP_LOCAL_OPT_OUT = False, False, False
    assert [m.id for m in check_login_second_factor()] == ["cds.E030"]
    settings.ADMIN_OTP_LOCAL_OPT_OUT = True
    assert [m.id for m in check_login_second_factor()] == ["cds.W030"]
    settings.ADMIN_OTP_REQUIRED = True
    assert check_login_second_factor() == []
    settings.ADMIN_OTP_REQUIRED, settings.DEBUG = False, True
    assert check_login_second_factor() == []


@pytest.fixture
def behind_ingress(settings: Any) -> None:
    """TRUSTED_PROXY_COUNT=1, as in deploy/k8s/configmap.yaml."""
    settings.AXES_IPWARE_PROXY_COUNT = 0
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")


def _login(username: str, password: str, forwarded_for: str) -> int:
    response = Client().post(
        "/admin/login/", {"username": username, "password": password}, HTTP_X_FORWARDED_FOR=forwarded_for
    )
    return int(response.status_code)


def test_spraying_from_one_address_locks_that_address_not_everyone_behind_the_ingress(
    clinician: Any, behind_ingress: None, settings: Any
) -> None:
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(f"guess{i}", "Winter2026!", "203.0.113.7") == 200
    assert _login("guess-last", "Winter2026!", "203.0.113.7") == 429
    assert _login("clin", "pw-clin", "203.0.113.7") == 429  # that address is locked
    assert _login("clin", "pw-clin", "198.51.100.2") == 302  # another client behind the same ingress is not
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}


def test_forged_forwarded_entries_do_not_give_a_fresh_address(
    clinician: Any, behind_ingress: None, settings: Any
) -> None:
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login(f"guess{i}", "x", f"10.9.9.{i}, 203.0.113.7")  # only the ingress' own entry would be believed
    assert _login("other", "x", "10.9.9.99, 203.0.113.7") == 429
    assert "10.9.9.1" not in set(AccessAttempt.objects.values_list("ip_address", flat=True))


def test_a_username_is_locked_after_failures_from_many_addresses(
    clinician: Any, behind_ingress: None, settings: Any
) -> None:
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login("clin", "wrong", f"198.51.100.{i + 10}")
    assert _login("clin", "pw-clin", "192.0.2.50") == 429


def test_each_further_lockout_of_a_username_doubles_the_cool_off(
    clinician: Any, behind_ingress: None, settings: Any
) -> None:
    settings.AXES_COOLOFF_HOURS = 1.0

    def fail(times: int) -> None:
        for i in range(times):
            _login("clin", "wrong", f"198.51.100.{i + 10}")

    def age_attempts(hours: float) -> None:
        AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(hours=hours))

    fail(settings.AXES_FAILURE_LIMIT)
    age_attempts(1.5)  # past the first cool-off of one hour
    assert _login("clin", "pw-clin", "192.0.2.50") == 302  # and a success resets the count

    fail(settings.AXES_FAILURE_LIMIT * 2)  # locked, and kept guessing during the lockout
    age_attempts(1.5)
    assert _login("clin", "pw-clin", "192.0.2.51") == 429  # second lockout: two hours
    age_attempts(2.5)
    assert _login("clin", "pw-clin", "192.0.2.52") == 302


def test_make_up_and_the_live_test_stacks_still_pass_the_checks(monkeypatch: Any) -> None:
    from deploy.livestack import live_env
    from deploy.stack import stack_env

    for name in ("ADMIN_OTP_REQUIRED", "ADMIN_OTP_LOCAL_OPT_OUT"):
        monkeypatch.delenv(name, raising=False)  # what the stacks set, not what pytest's env does

    for env in (
        stack_env(embedded=False),
        live_env(database_url="postgres://x@127.0.0.1/x", base_url="http://x", queue="q"),
    ):
        result = _fresh_settings(**{k: env[k] for k in ("ADMIN_OTP_REQUIRED", "ADMIN_OTP_LOCAL_OPT_OUT")})
        assert result.returncode == 0, result.stderr
        assert "cds.W030" in result.stderr
