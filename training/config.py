"""Read every training entry point's config the same way (docs/style.md G13, E8).

Defaults live in each script's dataclass (with a nested ``model`` dataclass); an optional
``--config FILE.toml`` overrides them, and ``--key=value`` flags (``--model.x=...`` for the model)
override that. Unknown keys and type mismatches are errors. Scripts import these, never each
other's parsers.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tomllib
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def coerce(value: Any, target: Any, key: str) -> Any:
    """Convert a flag string or TOML value to the type of ``target``; raise ValueError on mismatch.

    A tuple target takes a list, or a comma-separated string whose items take the first item's type.
    """
    if isinstance(target, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        kind = type(target[0]) if target else str
        return tuple(coerce(v, kind(), key) if isinstance(v, str) else v for v in value)
    kind = type(target)
    if isinstance(value, str) and kind is not str:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"{key}: expected a bool, got {value!r}")
            return value.lower() in ("true", "1")
        try:
            return kind(value)
        except ValueError as exc:
            raise ValueError(f"{key}: expected {kind.__name__}, got {value!r}") from exc
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind):
        raise ValueError(f"{key}: expected {kind.__name__}, got {value!r}")
    return value


def apply_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """Return ``cfg`` (a dataclass with a ``model`` dataclass field) with dotted-key overrides."""
    train_fields = {f.name for f in dataclasses.fields(cfg)} - {"model"}
    model_fields = {f.name for f in dataclasses.fields(cfg.model)}
    train_updates: dict[str, Any] = {}
    model_updates: dict[str, Any] = {}
    for key, value in overrides.items():
        if key.startswith("model."):
            name = key.removeprefix("model.")
            if name not in model_fields:
                raise ValueError(f"unknown model config key {key!r}")
            model_updates[name] = coerce(value, getattr(cfg.model, name), key)
        elif key in train_fields:
            train_updates[key] = coerce(value, getattr(cfg, key), key)
        else:
            raise ValueError(f"unknown config key {key!r}")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model_updates), **train_updates)


def parse_config(default: Any, argv: list[str]) -> Any:
    """Defaults -> optional ``--config FILE.toml`` -> ``--key=value`` flags; unknown keys are errors."""
    cfg = default
    flags: dict[str, Any] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--config":
            with Path(args.pop(0)).open("rb") as fh:
                raw = tomllib.load(fh)
            flat = {k: v for k, v in raw.items() if k != "model"}
            flat.update({f"model.{k}": v for k, v in raw.get("model", {}).items()})
            cfg = apply_overrides(cfg, flat)
        elif arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            flags[key] = value
        else:
            raise ValueError(f"unrecognised argument {arg!r}; use --config FILE or --key=value")
    return apply_overrides(cfg, flags)


def resolve_device(name: str) -> Any:
    """The torch device for ``--device`` (cpu, cuda, cuda:N); asking for CUDA without one is an error."""
    import torch  # only the training scripts that take --device need torch here

    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device={name}: CUDA is not available on this machine")
    return device


def git_sha() -> str:
    """Return the current git commit (stored in every checkpoint), or "unknown" outside a repository."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
