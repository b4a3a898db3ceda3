"""The one thin wrapper around LiteLLM chat completions: timeouts, credentials, error mapping, usage.

Every chat model — the offline `local/extractive` default and any hosted or self-hosted model —
is called through here with the same code path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from accounts.models import Organization
from chat.exceptions import ChatModelError

logger = logging.getLogger(__name__)


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class CompletionStream:
    """Iterate to get text pieces; `usage` is filled once the stream is exhausted."""

    pieces: Iterator[str]
    usage: Usage = field(default_factory=Usage)

    def __iter__(self) -> Iterator[str]:
        return self.pieces


def _credentials(model: str, organization: Organization | None) -> dict[str, Any]:
    """The organisation's own key for the model's provider, if it stored one; else LiteLLM's env."""
    if organization is None or "/" not in model:
        return {}
    from chat.models import ProviderKey
    from chat.secrets_box import decrypt

    provider = model.split("/", 1)[0]
    stored = ProviderKey.objects.filter(organization=organization, provider=provider).first()
    if stored is None:
        return {}
    key = decrypt(stored.encrypted_key)
    if key is None:
        raise ChatModelError(
            "provider_key_unreadable",
            f"The stored {provider} key can no longer be decrypted (the server's SECRET_KEY changed). Enter it again.",
        )
    credentials: dict[str, Any] = {"api_key": key}
    if stored.api_base:
        credentials["api_base"] = stored.api_base
    return credentials


def _map_error(exc: Exception, model: str) -> ChatModelError:
    name = type(exc).__name__
    text = str(exc).splitlines()[0][:300] if str(exc) else name
    if "Authentication" in name:
        return ChatModelError("model_auth", f"The provider rejected the API key for {model}. Check the key.")
    if "NotFound" in name or "BadRequest" in name:
        return ChatModelError("model_request", f"The model {model} refused the request: {text}")
    if "RateLimit" in name:
        return ChatModelError("model_rate_limited", f"The model {model} is rate-limited right now; try again shortly.")
    if "Timeout" in name:
        return ChatModelError("model_timeout", f"The model {model} did not answer in time.")
    return ChatModelError("model_unavailable", f"The model {model} could not answer: {text}")


def stream_completion(
    *,
    model: str,
    messages: list[dict[str, Any]],
    temperature: float,
    organization: Organization | None = None,
    extra: dict[str, Any] | None = None,
) -> CompletionStream:
    """Start a streamed completion. Raises ChatModelError on failure (also mid-stream)."""
    from inference.gateway import get_litellm

    litellm = get_litellm()
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": temperature,
        "stream": True,
        "timeout": settings.GROUNDWORK_MODEL_TIMEOUT,
        "stream_options": {"include_usage": True},
        **_credentials(model, organization),
        **(extra or {}),
    }
    if not model.startswith("local/"):
        kwargs["drop_params"] = True  # providers differ in the options they take
    try:
        response = litellm.completion(**kwargs)
    except Exception as exc:
        raise _map_error(exc, model) from exc

    result = CompletionStream(pieces=iter(()))

    def pieces() -> Iterator[str]:
        try:
            for chunk in response:
                usage = getattr(chunk, "usage", None)
                if usage:
                    result.usage.prompt_tokens = getattr(usage, "prompt_tokens", None)
                    result.usage.completion_tokens = getattr(usage, "completion_tokens", None)
                choices = getattr(chunk, "choices", None) or []
                if not choices:
                    continue
                delta = getattr(choices[0], "delta", None)
                content = getattr(delta, "content", None) if delta is not None else None
                if content:  # the closing chunk carries no content
                    yield content
        except ChatModelError:
            raise
        except Exception as exc:
            raise _map_error(exc, model) from exc

    result.pieces = pieces()
    return result


def complete_text(
    *, model: str, messages: list[dict[str, Any]], organization: Organization | None = None, temperature: float = 0.0
) -> str:
    """One short non-streamed completion (e.g. an evaluation judge). Raises ChatModelError."""
    from inference.gateway import get_litellm

    try:
        response = get_litellm().completion(
            model=model,
            messages=messages,
            temperature=temperature,
            timeout=settings.GROUNDWORK_MODEL_TIMEOUT,
            drop_params=True,
            **_credentials(model, organization),
        )
    except ChatModelError:
        raise
    except Exception as exc:
        raise _map_error(exc, model) from exc
    return str(response.choices[0].message.content or "")
