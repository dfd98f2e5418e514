"""A real Triton server serving the shipped model repository (CPU variants) for the whole session.

Built by ``python -m inference.export`` and committed under ``deploy/triton/model_repository``;
served by the ``tritonserver`` of ``.venv-triton`` (created on first use), on free ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.local_triton import LocalTriton
from tests.cds.writeback.conftest import Sekmet
from tests.conftest import REPO_ROOT
from tests.inference.conftest import require_triton_venv

REPOSITORY = REPO_ROOT / "deploy" / "triton" / "model_repository"


def served_models() -> list[str]:
    """Return the models of the shipped repository."""
    return sorted(path.parent.name for path in REPOSITORY.glob("*/config.pbtxt"))


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    """Serve the shipped repository with its CPU configs; stop it at the end of the session."""
    require_triton_venv()
    root: Path = tmp_path_factory.mktemp("model-server")
    server = LocalTriton(
        repository=REPOSITORY,
        config_name="cpu",
        load_models=served_models(),
        work_dir=root / "work",
        log_path=root / "tritonserver.log",
    )
    server.start(timeout_s=120)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sekmet]:
    """A real R4 server (sekmet-fhir on 127.0.0.1) playing the hospital's EHR."""
    server = Sekmet(tmp_path_factory.mktemp("ehr")).start()
    yield server
    server.stop()
