"""Registered client keys (JWK Sets): validate them, and pick the key that verifies an assertion.

SMART Backend Services clients sign their assertions with RS384 or ES384; servers must accept both
and nothing else is portable, so those are the only algorithms we verify with. Public keys only: a
JWK carrying private parameters (``d``, ``p``...) means the client leaked its key to us, so it is
refused at registration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

ASSERTION_ALGORITHMS = ("RS384", "ES384")
_KTY_BY_ALG = {"RS384": "RSA", "ES384": "EC"}
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
_MIN_RSA_BITS = 2048


def jwks_validate(value: Any) -> None:
    """Raise ``ValidationError`` unless ``value`` is ``{}`` or a JWK Set of usable public keys.

    Each key needs a unique ``kid``, ``kty`` RSA (at least 2048 bits) or EC on P-384, no private
    members, and, when it names one, an ``alg`` of RS384 or ES384.
    """
    if value == {}:
        return
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list) or not value["keys"]:
        raise ValidationError('a JWKS is a JSON object {"keys": [...]} with at least one key')
    kids: set[str] = set()
    for index, key in enumerate(value["keys"]):
        where = f"keys[{index}]"
        if not isinstance(key, dict):
            raise ValidationError(f"{where} is not a JSON object")
        kid = key.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValidationError(f"{where} needs a kid (clients name their signing key by it)")
        if kid in kids:
            raise ValidationError(f"{where}: kid {kid!r} is used twice")
        kids.add(kid)
        if _PRIVATE_MEMBERS & set(key):
            raise ValidationError(f"{where} ({kid}) holds private key material; register the public key only")
        algs = [key["alg"]] if "alg" in key else [a for a, kty in _KTY_BY_ALG.items() if kty == key.get("kty")]
        if not algs or any(a not in ASSERTION_ALGORITHMS for a in algs):
            raise ValidationError(f"{where} ({kid}): only RSA keys for RS384 and EC P-384 keys for ES384 are accepted")
        try:
            public_key = jwt.PyJWK(key, algorithm=algs[0]).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            raise ValidationError(f"{where} ({kid}) is not a valid {algs[0]} public key: {exc}") from exc
        if key.get("kty") == "RSA" and public_key.key_size < _MIN_RSA_BITS:
            raise ValidationError(f"{where} ({kid}): RSA keys must have at least {_MIN_RSA_BITS} bits")
        if key.get("kty") == "EC" and key.get("crv") != "P-384":
            raise ValidationError(f"{where} ({kid}): ES384 needs an EC key on curve P-384")


def jwk_verifying_key(jwk: dict[str, Any], alg: str) -> Any | None:
    """Return the public key object of ``jwk`` for verifying with ``alg``, or None when they do not match.

    None when ``alg`` is not an assertion algorithm, the key's type does not fit it, or the key
    names a different ``alg`` (so an RSA key registered for RS384 cannot be used with RS256).
    """
    if alg not in ASSERTION_ALGORITHMS or jwk.get("kty") != _KTY_BY_ALG[alg]:
        return None
    if jwk.get("alg", alg) != alg:
        return None
    try:
        return jwt.PyJWK(jwk, algorithm=alg).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        return None


def jwks_file_read(file_name: str) -> dict[str, Any]:
    """Return the JWK Set in ``file_name`` (a command's ``--jwks``); ``CommandError`` when unreadable or not an object."""
    try:
        value = json.loads(Path(file_name).read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"--jwks {file_name}: {exc}") from exc
    if not isinstance(value, dict) or not value:
        raise CommandError(f'--jwks {file_name}: expected a JWK Set, {{"keys": [...]}}')
    return value
