"""Find NUL characters (U+0000), which PostgreSQL ``text`` and ``jsonb`` cannot store, in parsed JSON.

The request bodies are checked here, after the view has authenticated the caller and parsed the body
once (``cds.fhir.http.parse_body`` for FHIR, :class:`NulRejectingJSONParser` for the other DRF routes):
checking them in a middleware meant parsing a suspect body a second time for anyone, credentials or
not (issue 13). Paths and query strings, which cost nothing to scan, stay in ``RejectNulMiddleware``.
"""

from __future__ import annotations

from typing import Any

from rest_framework.parsers import JSONParser

from cds.core.exceptions import ApplicationError


def nul_path(value: Any, root: str | None = None) -> str | None:
    """Return the FHIRPath-like location of the first string (value or key) in ``value`` holding NUL.

    ``root`` names the top element (a resourceType); ``$this`` when absent. Walks with an explicit
    stack (depth-first, document order) so that deep nesting cannot exhaust Python's recursion limit.
    """
    stack: list[tuple[Any, str]] = [(value, root or "$this")]
    while stack:
        node, here = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return here
        elif isinstance(node, dict):
            for key in node:
                if "\x00" in key:
                    return f"{here}.{key.replace(chr(0), '')}"
            stack.extend((item, f"{here}.{key}") for key, item in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((item, f"{here}[{index}]") for index, item in reversed(list(enumerate(node))))
    return None


def body_nul_path(raw: bytes, parsed: Any) -> str | None:
    """Return where ``parsed`` (the JSON of ``raw``) holds a NUL, or None.

    JSON carries a NUL only as the ``\\u0000`` escape (a raw control byte is a parse error), so the
    bytes are scanned first and only the rare suspect body is walked.
    """
    if b"\\u0000" not in raw and b"\x00" not in raw:
        return None
    root = parsed.get("resourceType") if isinstance(parsed, dict) else None
    return nul_path(parsed, root if isinstance(root, str) else None)


class NulRejectingJSONParser(JSONParser):
    """DRF's JSON parser, answering 400 ``{message, extra: {where}}`` for a NUL anywhere in the body.

    DRF parses lazily, on the view's first ``request.data``, so this runs after authentication.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        where = nul_path(parsed)
        if where is not None:
            raise ApplicationError(f"{where} contains a NUL character, which cannot be stored", {"where": where})
        return parsed
