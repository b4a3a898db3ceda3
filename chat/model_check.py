"""**Test connection** on the chatbot form: one tiny request through LiteLLM, the answer in plain words.

The request is the smallest a provider accepts (one short user message, at most a few tokens),
sent with the organisation's stored key for that provider, exactly as answers are sent
(`chat.rag.generate`). Whatever goes wrong is told as what the editor can do about it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings

from accounts.models import Organization
from chat.exceptions import ChatError
from chat.rag.generate import _credentials
from chat.services import chat_model_check

# A test should answer quickly or say so; a slow provider is reported, not waited for.
CHECK_TIMEOUT: Final = 15.0

# Common LiteLLM models for the form's suggestion list (free entry stays possible).
COMMON_MODELS: Final = (
    ("local/extractive", "Built-in: quotes your documents, no API key, runs offline"),
    ("openai/gpt-4o-mini", "OpenAI · fast and inexpensive"),
    ("openai/gpt-4o", "OpenAI"),
    ("anthropic/claude-3-5-haiku-latest", "Anthropic · fast"),
    ("anthropic/claude-3-5-sonnet-latest", "Anthropic"),
    ("gemini/gemini-1.5-flash", "Google Gemini · fast"),
    ("mistral/mistral-small-latest", "Mistral"),
    ("groq/llama-3.1-8b-instant", "Groq · Llama 3.1"),
    ("together_ai/meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "Together AI · Llama 3.1"),
    ("cohere/command-r", "Cohere"),
    ("azure/<your-deployment>", "Azure OpenAI · your deployment's name"),
    ("ollama/llama3.1", "Ollama on your own server"),
)


def common_models() -> list[tuple[str, str]]:
    """The suggestions whose provider the operator allows."""
    allowed = set(settings.GROUNDWORK_ALLOWED_MODEL_PROVIDERS)
    return [(model, label) for model, label in COMMON_MODELS if model.split("/", 1)[0] in allowed]


@dataclass(frozen=True, slots=True)
class ConnectionResult:
    ok: bool
    model: str
    message: str  # plain words for the editor
    detail: str = ""  # the provider's own words, when it said something
    elapsed_ms: int | None = None


def _plain(exc: Exception, model: str, *, has_key: bool) -> tuple[str, str]:
    name = type(exc).__name__
    detail = " ".join(str(exc).split())[:400]
    provider = model.split("/", 1)[0] if "/" in model else "the provider"
    if not has_key and "api_key" in detail.lower():  # the client refused to send without a key
        return (
            f"There is no API key for {provider}. Add one under Settings → Model providers, then test again.",
            detail,
        )
    if "Authentication" in name or "PermissionDenied" in name:
        if not has_key:
            return (
                f"There is no API key for {provider}. Add one under Settings → Model providers, then test again.",
                detail,
            )
        return f"{provider} rejected the API key. Check that it is complete and still active.", detail
    if "NotFound" in name:
        return f"{provider} does not know the model “{model.split('/', 1)[-1]}”. Check its exact name.", detail
    if "RateLimit" in name:
        return f"{provider} says you sent too many requests or your credit ran out. Try later or check billing.", detail
    if "Timeout" in name:
        return (
            f"{provider} did not answer within {int(CHECK_TIMEOUT)} seconds. It may be overloaded or unreachable.",
            detail,
        )
    if "APIConnection" in name or "ConnectError" in name or "Connection" in detail[:200]:
        return f"Could not reach {provider}. Check the server address and that this server can reach it.", detail
    if "BadRequest" in name:
        return f"{provider} refused the request. Its message is below.", detail
    if "ServiceUnavailable" in name or "InternalServer" in name:
        return f"{provider} is having problems right now. Try again in a few minutes.", detail
    return f"The model could not be reached: {name}.", detail


def chat_model_connection_test(*, model: str, organization: Organization) -> ConnectionResult:
    """Send one tiny request to `model` (empty: the default) with the organisation's credentials."""
    from inference.gateway import get_litellm

    model = model.strip() or settings.GROUNDWORK_CHAT_MODEL
    try:
        chat_model_check(model)
        credentials = _credentials(model, organization)
    except ChatError as exc:
        return ConnectionResult(ok=False, model=model, message=exc.message)
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Reply with the word OK."}],
        "max_tokens": 5,
        "temperature": 0,
        "timeout": min(CHECK_TIMEOUT, settings.GROUNDWORK_MODEL_TIMEOUT),
        "num_retries": 0,
        **credentials,
    }
    if not model.startswith("local/"):
        kwargs["drop_params"] = True
    started = time.monotonic()
    try:
        get_litellm().completion(**kwargs)
    except Exception as exc:  # every provider error is reported, none is raised to the page
        env_key = f"{model.split('/', 1)[0].upper()}_API_KEY"
        message, detail = _plain(exc, model, has_key=bool(credentials) or bool(os.environ.get(env_key)))
        return ConnectionResult(ok=False, model=model, message=message, detail=detail)
    elapsed = int((time.monotonic() - started) * 1000)
    return ConnectionResult(ok=True, model=model, message=f"Connected: {model} answered.", elapsed_ms=elapsed)
