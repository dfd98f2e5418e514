"""Static files under production settings (DEBUG=false): collectstatic, then gunicorn serves them (WhiteNoise)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import requests

from deploy.livestack import free_port, manage, spawn, stop_processes, wait_for_health, web_command


def test_gunicorn_serves_the_admin_css_with_hashed_names_and_compression(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"STATIC_MANIFEST", "WHITENOISE_USE_FINDERS"}},
        "DEBUG": "false",
        "SECRET_KEY": "static-test-only",
        "CDS_VAR_DIR": str(tmp_path),  # STATIC_ROOT is $CDS_VAR_DIR/static
        "DATABASE_URL": f"sqlite:///{tmp_path / 'static-test.sqlite3'}",  # the login page reads no table
        "SECURE_SSL_REDIRECT": "false",
    }
    manage(env, "collectstatic", "--no-input", "-v", "0")
    assert (tmp_path / "static" / "staticfiles.json").exists()  # the manifest: hashed names
    port = free_port()
    log = tmp_path / "web.log"
    web = spawn(web_command(port, workers=1), env, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base, log=log)
        login = requests.get(f"{base}/admin/login/", timeout=10)
        assert login.status_code == 200, login.text[:500]
        hashed = re.search(r"/static/admin/css/base\.[0-9a-f]{12}\.css", login.text)
        assert hashed, login.text[:2000]  # the page links the cache-forever name

        css = requests.get(base + hashed.group(0), headers={"Accept-Encoding": "gzip"}, timeout=10)
        assert css.status_code == 200
        assert css.headers["Content-Type"].startswith("text/css")
        assert css.headers["Content-Encoding"] == "gzip"
        assert "immutable" in css.headers["Cache-Control"]
        assert "body" in css.text  # decoded by requests: the real stylesheet

        plain = requests.get(f"{base}/static/admin/css/base.css", timeout=10)
        assert plain.status_code == 200 and "immutable" not in plain.headers["Cache-Control"]
        assert requests.get(f"{base}/static/admin/css/missing.css", timeout=10).status_code == 404
    finally:
        stop_processes([web], timeout_s=10)
