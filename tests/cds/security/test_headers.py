"""Security headers, CSRF on the admin, HTTPS-only production settings and their system checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from cds.core.checks import check_security
from cds.core.middleware import API_POLICY, PAGE_POLICY
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.django_db

# What a production deployment runs with (the defaults when DEBUG is false; see cds/settings.py).
PRODUCTION = {
    "DEBUG": False,
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "SECURE_HSTS_SECONDS": 31536000,
    "OAUTH_ALLOW_CLIENT_SECRET": False,
    "PUBLIC_BASE_URL": "https://ecg.example.org",
}


def assert_common_headers(response: Any) -> None:
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.parametrize(
    "path", ["/fhir/metadata", "/fhir/Observation", "/cds-services", "/.well-known/smart-configuration"]
)
def test_it_sends_security_headers_and_no_store_on_api_responses(service_account: Any, path: str) -> None:
    response = service_account.get(path)
    assert response.status_code == 200, response.content
    assert_common_headers(response)
    assert response["Content-Security-Policy"] == API_POLICY
    assert response["Cache-Control"] == "no-store"


def test_it_sends_no_store_on_fhir_errors_too(anonymous: Any) -> None:
    response = anonymous.get("/fhir/Patient")
    assert response.status_code == 401
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Security-Policy"] == API_POLICY


def test_it_sends_security_headers_on_admin_pages(client: Client) -> None:
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert_common_headers(response)
    assert response["Content-Security-Policy"] == PAGE_POLICY
    assert "script-src" not in PAGE_POLICY  # scripts fall back to default-src 'self': no inline script runs


def test_it_refuses_an_admin_login_without_a_csrf_token(django_user_model: Any) -> None:
    django_user_model.objects.create_superuser("root", password="a-long-password-1")
    csrf_client = Client(enforce_csrf_checks=True)
    response = csrf_client.post("/admin/login/", {"username": "root", "password": "a-long-password-1"})
    assert response.status_code == 403
    # With the token from the form, the same login goes through.
    page = csrf_client.get("/admin/login/")
    token = page.cookies["csrftoken"].value
    form = {"username": "root", "password": "a-long-password-1", "csrfmiddlewaretoken": token}
    assert csrf_client.post("/admin/login/?next=/admin/", form).status_code == 302


@override_settings(**PRODUCTION)
def test_it_redirects_http_to_https_in_production_except_the_probes() -> None:
    client = Client()  # a new client loads SecurityMiddleware with the production settings
    response = client.get("/fhir/metadata")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/fhir/metadata"
    assert client.post("/auth/token", {}).status_code == 301
    assert client.get("/admin/login/").status_code == 301
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in {200, 503}  # the models may be absent; never a redirect
    secure = client.get("/fhir/metadata", secure=True)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000"


@override_settings(**PRODUCTION, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_it_trusts_the_tls_proxy_header_when_configured() -> None:
    client = Client()
    assert client.get("/fhir/metadata", HTTP_X_FORWARDED_PROTO="https").status_code == 200
    assert client.get("/fhir/metadata", HTTP_X_FORWARDED_PROTO="http").status_code == 301


@override_settings(**PRODUCTION)
def test_it_marks_session_and_csrf_cookies_secure_in_production(django_user_model: Any) -> None:
    django_user_model.objects.create_superuser("root", password="a-long-password-1")
    client = Client()
    page = client.get("/admin/login/", secure=True)
    assert page.cookies["csrftoken"]["secure"]
    form = {"username": "root", "password": "a-long-password-1", "csrfmiddlewaretoken": page.cookies["csrftoken"].value}
    login = client.post("/admin/login/?next=/admin/", form, secure=True)
    assert login.status_code == 302
    assert login.cookies["sessionid"]["secure"] and login.cookies["sessionid"]["httponly"]


def test_it_warns_when_production_runs_without_https_settings() -> None:
    with override_settings(**PRODUCTION):
        assert check_security() == []
    with override_settings(**{**PRODUCTION, "SECURE_SSL_REDIRECT": False, "SECURE_HSTS_SECONDS": 0}):
        (warning,) = check_security()
        assert warning.id == "cds.W020" and "SECURE_SSL_REDIRECT, SECURE_HSTS_SECONDS" in warning.msg
    with override_settings(**{**PRODUCTION, "OAUTH_ALLOW_CLIENT_SECRET": True, "PUBLIC_BASE_URL": "http://x"}):
        assert [w.id for w in check_security()] == ["cds.W021", "cds.W022"]
    with override_settings(**PRODUCTION, OAUTH_TOKEN_LIFETIME_SECONDS=3600):
        assert [w.id for w in check_security()] == ["cds.W023"]
    with override_settings(DEBUG=True, SECURE_SSL_REDIRECT=False, OAUTH_ALLOW_CLIENT_SECRET=True):
        assert check_security() == []


def _settings_in_a_fresh_process(env: dict[str, str]) -> dict[str, Any]:
    """Return a few settings as ``cds.settings`` computes them from exactly ``env`` (no pytest-env defaults)."""
    code = (
        "import json, django; from django.conf import settings as s; django.setup(); print(json.dumps({n: getattr(s, n)"
        " for n in ['DEBUG', 'SECRET_KEY', 'OAUTH_ALLOW_CLIENT_SECRET', 'SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE',"
        " 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'SECURE_REDIRECT_EXEMPT', 'CSRF_TRUSTED_ORIGINS',"
        " 'X_FRAME_OPTIONS', 'WRITEBACK_PRIVATE_KEY']}))"
    )
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "cds.settings", "DATABASE_URL": settings_db_url()}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def settings_db_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_it_defaults_to_https_only_and_secrets_from_files_when_debug_is_off(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("from-a-mounted-file\n")
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")
    env = {
        "SECRET_KEY_FILE": str(tmp_path / "secret_key"),
        "WRITEBACK_PRIVATE_KEY_FILE": str(tmp_path / "key.pem"),
        "CSRF_TRUSTED_ORIGINS": "https://ecg.example.org",
    }
    production = _settings_in_a_fresh_process(env)
    assert production["DEBUG"] is False
    assert production["SECRET_KEY"] == "from-a-mounted-file"
    assert production["WRITEBACK_PRIVATE_KEY"].startswith("-----BEGIN PRIVATE KEY-----")
    assert production["OAUTH_ALLOW_CLIENT_SECRET"] is False
    assert (
        production["SECURE_SSL_REDIRECT"] and production["SESSION_COOKIE_SECURE"] and production["CSRF_COOKIE_SECURE"]
    )
    assert production["SECURE_HSTS_SECONDS"] == 31536000
    assert production["SECURE_REDIRECT_EXEMPT"] == [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes and scrapers
    assert production["CSRF_TRUSTED_ORIGINS"] == ["https://ecg.example.org"]
    assert production["X_FRAME_OPTIONS"] == "DENY"
    demo = _settings_in_a_fresh_process({"DEBUG": "true"})
    assert demo["OAUTH_ALLOW_CLIENT_SECRET"] is True
    assert not demo["SECURE_SSL_REDIRECT"] and demo["SECURE_HSTS_SECONDS"] == 0


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off() -> None:
    code = "import django; django.setup()"
    env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "cds.settings"}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "SECRET_KEY (or SECRET_KEY_FILE) must be set" in result.stderr
