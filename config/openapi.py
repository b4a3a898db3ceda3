"""OpenAPI post-processing: the error answers every operation can give, documented once.

drf-spectacular documents the success answer of each operation; the errors come from shared
machinery (authentication, permissions, validation, the exception handler in `config.api`, the
widget's origin checks and rate limit, "database busy"), so they are added here to every operation
they can happen on, with one `Error` schema. The API fuzz test (tests/test_fuzz_api_schema.py)
holds the server to it: any status or body not documented here or by the view fails it.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "An error. `error` is a stable code and `detail` says what to do; invalid input instead names "
        "each offending field with its messages (`non_field_errors` for the body as a whole)."
    ),
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "string"},
        "retry_after": {"type": "integer", "description": "Seconds to wait before trying again (429, 503)."},
    },
    "additionalProperties": True,
}

# The OpenAI-compatible endpoint answers errors in OpenAI's shape, so its clients' error handling works.
OPENAI_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
            "required": ["message"],
        }
    },
    "required": ["error"],
}

REASONS = {
    "400": "Invalid input: the body says which field and why.",
    "401": "No or invalid credentials (an API key goes in `Authorization: Bearer …`).",
    "403": "Not allowed: the key's role may not do this (widget: origin not allowed or the chat is off).",
    "404": "No such object in your organisation.",
    "409": "The object's state does not allow this now (e.g. already published, name taken).",
    "413": "The request body is larger than the server accepts.",
    "415": "Unsupported request content type.",
    "429": "Too many requests: wait `retry_after` seconds (header `Retry-After`).",
    "503": "The database is busy: try again after `Retry-After` seconds.",
}

BODY_METHODS = {"post", "put", "patch"}
WRITE_METHODS = BODY_METHODS | {"delete"}


def _error_codes(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    # 404 everywhere: unknown ids in the path, the query (compare) or the body (a conversation to go on).
    codes = ["400", "403", "404", "503"]
    if path.startswith("/api/widget/"):
        if method in WRITE_METHODS:
            codes.append("429")
    else:
        codes.append("401")
    if method in WRITE_METHODS:
        codes.append("409")
    if method in BODY_METHODS:
        codes += ["413", "415"]
    return sorted(set(codes))


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry: document the shared error answers."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas["OpenAIError"] = OPENAI_ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        ref = {"$ref": "#/components/schemas/" + ("OpenAIError" if path.startswith("/v1/") else "Error")}
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for code in _error_codes(path, method, operation):
                responses.setdefault(code, {"content": {"application/json": {"schema": ref}}, "description": ""})
                if not responses[code].get("description"):
                    responses[code]["description"] = REASONS[code]
    return result
