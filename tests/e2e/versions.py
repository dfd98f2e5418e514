"""Add a second version of a served model to a Triton repository: version 1's artifact, its own label.

Used by tests/e2e/test_shadow.py and bench/bench_shadow.py (no Django: the bench imports it bare).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from inference.model_repository import SERVING_FILE, SERVING_PARAMETER


def add_copy_as_version_2(model_dir: Path, label: str) -> None:
    """Serve ``model_dir``'s version 1 artifact again as version 2, read with its own serving facts."""
    shutil.copytree(model_dir / "1", model_dir / "2")
    facts = json.loads((model_dir / "2" / SERVING_FILE).read_text())
    facts["model_version_label"] = label
    (model_dir / "2" / SERVING_FILE).write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    entry = json.dumps(json.dumps(facts, sort_keys=True))
    for config in (model_dir / "config.pbtxt", model_dir / "configs" / "cpu.pbtxt"):
        text = config.read_text()
        if "versions: [ 1 ]" not in text:
            raise ValueError(f"{config}: expected a config serving version 1 alone")
        text = text.replace("versions: [ 1 ]", "versions: [ 1, 2 ]")
        text += f'parameters {{ key: "{SERVING_PARAMETER.format(version=2)}" value {{ string_value: {entry} }} }}\n'
        config.write_text(text)
