"""GET what an EHR publishes (its JWK Set, a Patient) without trusting its size or its redirects."""

from __future__ import annotations

import requests


def bounded_get(url: str, *, headers: dict[str, str], timeout_s: float, max_bytes: int) -> tuple[int, bytes]:
    """Return the status and, for a 200, at most ``max_bytes + 1`` bytes of the body (more means too large).

    No redirects are followed: the registered URL is the one trusted. Raises
    ``requests.RequestException`` when the server cannot be reached or times out.
    """
    with requests.get(url, headers=headers, timeout=timeout_s, allow_redirects=False, stream=True) as response:
        if response.status_code != 200:
            return response.status_code, b""
        return 200, response.raw.read(max_bytes + 1, decode_content=True)
