"""The one thin wrapper around LiteLLM chat completions: timeouts, retries and fallbacks (LiteLLM's
Router), credentials, error mapping, usage.

Every chat model — the offline `local/extractive` default and any hosted or self-hosted model —
is called through here with the same code path.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
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
    """Iterate to get text pieces; `usage` is filled once the stream is exhausted.

    `model` is the model that answered: the requested one, or a fallback when it failed.
    `retries` and `fallbacks` count what it took (LiteLLM's Router reports both).
    """

    pieces: Iterator[str]
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    retries: int = 0
    fallbacks: int = 0

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


RATE_LIMITED = "Many people are asking questions right now. Please try again in a minute."
TIMED_OUT = "The assistant took too long to answer. Please try again in a moment."
UNAVAILABLE = "The assistant cannot answer right now. Please try again later."


def _map_error(exc: Exception, model: str) -> ChatModelError:
    name = type(exc).__name__
    text = str(exc).splitlines()[0][:300] if str(exc) else name
    if "Authentication" in name:
        return ChatModelError("model_auth", f"The provider rejected the API key for {model}. Check the key.")
    if "NotFound" in name or "BadRequest" in name:
        return ChatModelError("model_request", f"The model {model} refused the request: {text}")
    if "RateLimit" in name:
        return ChatModelError(
            "model_rate_limited", f"The model {model} is rate-limited right now; try again shortly.", RATE_LIMITED
        )
    if "Timeout" in name:
        return ChatModelError("model_timeout", f"The model {model} did not answer in time.", TIMED_OUT)
    return ChatModelError("model_unavailable", f"The model {model} could not answer: {text}", UNAVAILABLE)


Deployment = tuple[str, tuple[tuple[str, Any], ...]]  # (model, sorted litellm_params): hashable


@functools.lru_cache(maxsize=64)
def _router(deployments: tuple[Deployment, ...], num_retries: int, timeout: float) -> Any:
    """A LiteLLM Router over the bot's model and its fallbacks, in that order (built once per set).

    Each model is its own group, retried `num_retries` times with exponential backoff (LiteLLM's,
    configured by GROUNDWORK_LLM_RETRY_DELAY) on timeouts, 429s and 5xx; then the next group in the
    fallback list is tried. Cooldowns are off: one failed call must not bench a provider for every
    other bot of the process.
    """
    from inference.gateway import get_litellm

    litellm = get_litellm()
    models = [model for model, _ in deployments]
    return litellm.Router(
        model_list=[
            {"model_name": model, "litellm_params": {"model": model, "timeout": timeout, **dict(params)}}
            for model, params in deployments
        ],
        fallbacks=[{models[0]: models[1:]}] if len(models) > 1 else [],
        num_retries=num_retries,
        timeout=timeout,
        disable_cooldowns=True,
    )


def _deployment(model: str, organization: Organization | None) -> Deployment:
    params = _credentials(model, organization)
    if not model.startswith("local/"):
        params["drop_params"] = True  # providers differ in the options they take
    return model, tuple(sorted(params.items()))


def stream_completion(
    *,
    model: str,
    messages: list[dict[str, Any]],
    temperature: float,
    organization: Organization | None = None,
    extra: dict[str, Any] | None = None,
    fallbacks: Sequence[str] = (),
) -> CompletionStream:
    """Start a streamed completion, with retries and then `fallbacks` (LiteLLM's Router) when the
    model fails before its first token. Raises ChatModelError on failure (also mid-stream)."""
    chain = [model, *(m for m in dict.fromkeys(fallbacks) if m and m != model)]
    try:
        router = _router(
            tuple(_deployment(m, organization) for m in chain),
            settings.GROUNDWORK_LLM_NUM_RETRIES,
            settings.GROUNDWORK_MODEL_TIMEOUT,
        )
        response = router.completion(
            model=model,
            messages=messages,
            temperature=temperature,
            stream=True,
            stream_options={"include_usage": True},
            **(extra or {}),
        )
    except ChatModelError:
        raise
    except Exception as exc:
        error = _map_error(exc, model)
        if len(chain) > 1:
            error.message = f"{error.message} (fallbacks tried: {', '.join(chain[1:])})"
        raise error from exc

    hidden = getattr(response, "_hidden_params", None) or {}
    headers = hidden.get("additional_headers") or {}
    answered_by = str(hidden.get("litellm_model_name") or headers.get("x-litellm-model-group") or model)
    result = CompletionStream(
        pieces=iter(()),
        model=answered_by,
        retries=int(headers.get("x-litellm-attempted-retries") or 0),
        fallbacks=int(headers.get("x-litellm-attempted-fallbacks") or 0),
    )

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
            raise _map_error(exc, answered_by) from exc

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
