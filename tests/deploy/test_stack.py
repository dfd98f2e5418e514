"""deploy/stack.py helpers behind `make up` (issue 16): the local SECRET_KEY and what is printed."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from deploy import stack


def test_it_generates_a_private_secret_key_once_and_says_so(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(stack, "VAR", tmp_path)
    env: dict[str, str] = {}
    note = stack.ensure_secret_key(env)
    key_file = tmp_path / "secret_key"
    assert note is not None and "generated" in note and str(key_file) in note
    assert env["SECRET_KEY_FILE"] == str(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text()) >= 50
    key = key_file.read_text()

    again: dict[str, str] = {}
    assert "the local one" in (stack.ensure_secret_key(again) or "")
    assert key_file.read_text() == key  # kept: sessions survive a restart


def test_it_leaves_a_given_secret_key_alone(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(stack, "VAR", tmp_path)
    for given in ({"SECRET_KEY": "from-the-environment"}, {"SECRET_KEY_FILE": "/run/secrets/key"}):
        env = dict(given)
        assert stack.ensure_secret_key(env) is None
        assert env == given
    assert not (tmp_path / "secret_key").exists()


def test_it_prints_urls_without_passwords() -> None:
    env = stack.stack_env(embedded=False) | {
        "DATABASE_URL": "postgres://cds:s3cret@db:5432/cds",
        "CELERY_BROKER_URL": "amqp://ecg:hunter2@rabbitmq:5672//",
        "INFERENCE_BACKEND": "inprocess",
    }
    text = stack.where_everything_is(env, ["web", "worker"])
    assert "s3cret" not in text and "hunter2" not in text
    assert "postgres://cds:***@db:5432/cds" in text and "amqp://ecg:***@rabbitmq:5672//" in text
    for path in ("/admin/review/review/", "/admin/review/qualityprediction/dashboard/", "/metrics", "/fhir/metadata"):
        assert path in text
