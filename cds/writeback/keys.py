"""Our signing keys for SMART Backend Services client assertions, and their public JWKS (issue 15 item 7).

EHRs such as Epic register a backend client by a JWKS URL and fetch our public keys from it, so a
key can be rotated without re-registering: the *current* key signs; the others are *published only*
(the next key, published ahead so the EHR's cached JWKS already has it when we switch; the previous
key, kept until every assertion it signed has expired). docs/security.md, "Rotating the write-back
signing key", is the procedure.

Where the keys come from (read at call time, so a new file in the directory is published at once):

- ``WRITEBACK_PRIVATE_KEYS_DIR``: one PEM private key per file, ``<kid>.pem``;
- ``WRITEBACK_PRIVATE_KEY`` (+ ``WRITEBACK_KEY_ID``): the single-key case, as before;
- ``WRITEBACK_KEY_ID``: the kid of the current key, in either source.

Nothing here touches the database; a private member never leaves this module's ``SigningKey``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

MIN_RSA_BITS = 2048  # NIST SP 800-57: RSA under 2048 bits is not acceptable for signatures
JWK_PUBLIC_MEMBERS = {"kty", "n", "e", "crv", "x", "y"}  # everything else (d, p, q, dp, ...) is private


class KeyProblem(Exception):
    """Raise for a key that cannot be used: unreadable, weak, or of a type SMART does not allow."""


@dataclass(frozen=True)
class SigningKey:
    """One of our signing keys: its kid, the JWS algorithm its type implies, and the private PEM."""

    kid: str
    algorithm: str
    private_pem: str = field(repr=False)
    source: str = ""


@functools.lru_cache(maxsize=64)
def _key_info(pem: str) -> tuple[str, dict[str, Any]]:
    """Return (algorithm, public JWK members) of a private PEM; raise KeyProblem if it is not usable."""
    try:
        private = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyProblem(f"not a readable unencrypted PEM private key ({exc})") from None
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < MIN_RSA_BITS:
            raise KeyProblem(f"RSA key of {private.key_size} bits; at least {MIN_RSA_BITS} are required")
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        return "RS384", jwk
    if isinstance(private, ec.EllipticCurvePrivateKey):
        if not isinstance(private.curve, ec.SECP384R1):
            raise KeyProblem(f"EC key on {private.curve.name}; ES384 needs P-384")
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        return "ES384", jwk
    raise KeyProblem("neither RSA nor EC P-384 (SMART Backend Services signs with RS384 or ES384)")


def _configured_pems() -> list[tuple[str, str, str]]:
    """Return (kid, pem, where it came from) of every configured key, directory first, in kid order."""
    found = []
    directory = settings.WRITEBACK_PRIVATE_KEYS_DIR
    if directory:
        for path in sorted(Path(directory).glob("*.pem")):
            try:
                found.append((path.stem, path.read_text(), str(path)))
            except OSError as exc:
                found.append((path.stem, "", f"{path} (unreadable: {exc.strerror})"))
    if settings.WRITEBACK_PRIVATE_KEY:
        found.append((settings.WRITEBACK_KEY_ID, settings.WRITEBACK_PRIVATE_KEY, "WRITEBACK_PRIVATE_KEY"))
    return found


def signing_keys() -> list[SigningKey]:
    """Return every usable configured key (current and published-only); unusable ones are left out.

    ``key_set_problems`` reports what was left out (a system check refuses to start with any).
    """
    keys = []
    for kid, pem, source in _configured_pems():
        try:
            algorithm, _ = _key_info(pem)
        except KeyProblem:
            continue
        keys.append(SigningKey(kid=kid, algorithm=algorithm, private_pem=pem, source=source))
    return keys


def signing_key_current() -> SigningKey | None:
    """Return the key that signs now (kid ``WRITEBACK_KEY_ID``), or None when it is not configured."""
    return next((key for key in signing_keys() if key.kid == settings.WRITEBACK_KEY_ID), None)


def public_jwks() -> dict[str, Any]:
    """Return the JWK Set of our keys' public halves: ``kty``, ``kid``, ``alg``, ``use`` and the public numbers."""
    keys = []
    seen: set[str] = set()
    for key in signing_keys():
        if key.kid in seen:
            continue  # a duplicate kid is a configuration error (system check); never publish two
        seen.add(key.kid)
        _, jwk = _key_info(key.private_pem)
        public = {name: value for name, value in jwk.items() if name in JWK_PUBLIC_MEMBERS}
        keys.append({**public, "kid": key.kid, "alg": key.algorithm, "use": "sig"})
    return {"keys": keys}


def key_set_problems() -> list[str]:
    """Return what is wrong with the configured key set: unusable keys, duplicate kids, a missing current key."""
    problems = []
    directory = settings.WRITEBACK_PRIVATE_KEYS_DIR
    if directory and not Path(directory).is_dir():
        problems.append(f"WRITEBACK_PRIVATE_KEYS_DIR={directory!r} is not a readable directory")
    kids: dict[str, str] = {}
    for kid, pem, source in _configured_pems():
        if not kid:
            problems.append(f"{source}: the key has no kid (name the file <kid>.pem, or set WRITEBACK_KEY_ID)")
        try:
            _key_info(pem)
        except KeyProblem as exc:
            problems.append(f"{source}: {exc}")
        if kid in kids:
            problems.append(f"kid {kid!r} is used twice ({kids[kid]} and {source})")
        kids.setdefault(kid, source)
    current = settings.WRITEBACK_KEY_ID
    if current and current not in kids:
        problems.append(f"WRITEBACK_KEY_ID={current!r} (the current key) is not in the key set ({', '.join(kids)})")
    elif current and (key := signing_key_current()) and key.algorithm != settings.WRITEBACK_ALGORITHM:
        problems.append(f"the current key {current!r} signs {key.algorithm}, not WRITEBACK_ALGORITHM")
    return problems
