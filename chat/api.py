"""REST API of the chat app: chatbots, chat (JSON or server-sent events), OpenAI-compatible chat."""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import OrgScopedApiView
from accounts.permissions import Action
from chat import selectors, services
from chat.answer_turns import answers_on_this_cpu
from chat.exceptions import ChatError
from chat.models import Channel, Chatbot, Conversation
from chat.rag.answer import chat_answer, chat_answer_events
from chat.serializers import ChatbotInSerializer, ChatbotOutSerializer, ChatInSerializer
from chat.sse import ApiFormat, OpenAIFormat, answer_payload, answer_sse, openai_usage, sse_response

ANSWER_OUT = inline_serializer(
    "ChatAnswer",
    {
        "answer": serializers.CharField(allow_blank=True),
        "citations": serializers.ListField(child=serializers.DictField()),
        "refused": serializers.BooleanField(),
        "conversation_id": serializers.IntegerField(),
        "message_id": serializers.IntegerField(),
        "model": serializers.CharField(allow_blank=True),
        "grounding": serializers.DictField(),
        "latency": serializers.DictField(),
        "releases": serializers.ListField(),
    },
)
COMPLETIONS_IN = inline_serializer(
    "ChatCompletionsIn",
    {
        "model": serializers.CharField(help_text="a chatbot's id or slug"),
        "messages": serializers.ListField(child=serializers.DictField()),
        "stream": serializers.BooleanField(required=False),
        "conversation_id": serializers.IntegerField(required=False),
    },
)
COMPLETIONS_OUT = inline_serializer(
    "ChatCompletion",
    {
        "id": serializers.CharField(),
        "object": serializers.CharField(),
        "created": serializers.IntegerField(),
        "model": serializers.CharField(),
        "choices": serializers.ListField(child=serializers.DictField()),
        "usage": serializers.DictField(),
        "citations": serializers.ListField(child=serializers.DictField()),
        "refused": serializers.BooleanField(),
        "conversation_id": serializers.IntegerField(),
    },
)
SSE = (200, "text/event-stream")


class ChatbotScopedView(OrgScopedApiView):
    def get_chatbot(self, bot_id: str | int) -> Chatbot:
        bot = selectors.chatbot_get(organization=self.org, id_or_slug=bot_id)
        if bot is None:
            raise Http404("No such chatbot in your organisation.")
        return bot

    def knowledge_bases(self, ids: list[int]) -> list[Any]:
        try:
            return selectors.knowledge_bases_by_ids(organization=self.org, ids=ids)
        except ValueError as exc:
            raise serializers.ValidationError({"knowledge_bases": str(exc)}) from exc


class ChatbotListCreateApi(ChatbotScopedView):
    @extend_schema(responses=ChatbotOutSerializer(many=True))
    def get(self, request: Request) -> Response:
        bots = selectors.chatbots_for_org(organization=self.org)
        return Response(ChatbotOutSerializer(bots, many=True, context={"request": request}).data)

    @extend_schema(request=ChatbotInSerializer, responses={201: ChatbotOutSerializer})
    def post(self, request: Request) -> Response:
        serializer = ChatbotInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        kbs = self.knowledge_bases(data.pop("knowledge_bases"))
        bot = services.chatbot_create(
            organization=self.org,
            name=data.pop("name"),
            knowledge_bases=kbs,
            created_by=self.org_context.user,
            context=self.org_context,
            **data,
        )
        return Response(ChatbotOutSerializer(bot, context={"request": request}).data, status=status.HTTP_201_CREATED)


class ChatbotDetailApi(ChatbotScopedView):
    @extend_schema(responses=ChatbotOutSerializer)
    def get(self, request: Request, bot_id: str) -> Response:
        return Response(ChatbotOutSerializer(self.get_chatbot(bot_id), context={"request": request}).data)

    @extend_schema(request=ChatbotInSerializer, responses=ChatbotOutSerializer)
    def patch(self, request: Request, bot_id: str) -> Response:
        bot = self.get_chatbot(bot_id)
        serializer = ChatbotInSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        kbs = self.knowledge_bases(data.pop("knowledge_bases")) if "knowledge_bases" in data else None
        services.chatbot_update(chatbot=bot, knowledge_bases=kbs, context=self.org_context, **data)
        return Response(ChatbotOutSerializer(bot, context={"request": request}).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, bot_id: str) -> Response:
        bot = self.get_chatbot(bot_id)
        services.chatbot_delete(chatbot=bot, context=self.org_context)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChatbotChatApi(ChatbotScopedView):
    # Asking a question only reads the organisation's knowledge.
    write_action = Action.VIEW
    # Unstreamed, the view waits for the whole answer: it takes no request lane (config.lanes).
    long_request = True
    channel: str = Channel.API

    @extend_schema(
        request=ChatInSerializer, responses={(200, "application/json"): ANSWER_OUT, SSE: OpenApiTypes.OBJECT}
    )
    def post(self, request: Request, bot_id: str) -> Response | StreamingHttpResponse:
        bot = self.get_chatbot(bot_id)
        serializer = ChatInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        conversation: Conversation | None = None
        if serializer.validated_data.get("conversation_id"):
            conversation = selectors.conversation_get(chatbot=bot, pk=serializer.validated_data["conversation_id"])
            if conversation is None:
                raise Http404("No such conversation for this chatbot.")
        kwargs: dict[str, Any] = {
            "chatbot": bot,
            "question": serializer.validated_data["message"],
            "conversation": conversation,
            "channel": self.channel,
            "user": self.org_context.user,
        }
        if not serializer.validated_data["stream"]:
            return Response(answer_payload(chat_answer(**kwargs)))
        return sse_response(
            answer_sse(lambda: chat_answer_events(**kwargs), ApiFormat(), on_this_cpu=answers_on_this_cpu(bot))
        )


# --- OpenAI-compatible -----------------------------------------------------------------------


class ChatCompletionsApi(OrgScopedApiView):
    """`POST /v1/chat/completions` where `model` is a chatbot's id or slug.

    The answer comes from the chatbot (its knowledge bases, prompt and model); extra top-level
    fields `citations`, `refused` and `conversation_id` carry what the OpenAI format lacks.
    """

    write_action = Action.VIEW
    long_request = True  # as ChatbotChatApi

    def handle_exception(self, exc: Exception) -> Response:
        """Errors in OpenAI's shape here too (unreadable JSON, a bad key, busy), so OpenAI clients report them."""
        response = super().handle_exception(exc)
        data = response.data
        if not (isinstance(data, dict) and isinstance(data.get("error"), dict)):
            detail = data.get("detail", data) if isinstance(data, dict) else data
            code = getattr(detail, "code", None) or (data.get("error") if isinstance(data, dict) else None)
            response.data = {
                "error": {
                    "message": str(detail),
                    "type": "authentication_error" if response.status_code in (401, 403) else "invalid_request_error",
                    "param": None,
                    "code": str(code) if code else None,
                }
            }
        return response

    @extend_schema(
        request=COMPLETIONS_IN, responses={(200, "application/json"): COMPLETIONS_OUT, SSE: OpenApiTypes.OBJECT}
    )
    def post(self, request: Request) -> Response | StreamingHttpResponse:
        body = request.data if isinstance(request.data, dict) else {}
        model = str(body.get("model") or "")
        messages = body.get("messages")
        if not model or not isinstance(messages, list) or not messages:
            return _openai_error("`model` (a chatbot id or slug) and a non-empty `messages` list are required.")
        bot = selectors.chatbot_get(organization=self.org, id_or_slug=model)
        if bot is None:
            return _openai_error(
                f"The model `{model}` does not exist: use a chatbot id or slug.", 404, "model_not_found"
            )
        question = next(
            (
                _content_text(m.get("content"))
                for m in reversed(messages)
                if isinstance(m, dict) and m.get("role") == "user"
            ),
            "",
        )
        if not question.strip():
            return _openai_error("The last user message is empty.")
        conversation = None
        conversation_id = body.get("conversation_id")
        if conversation_id is not None:
            # A whole number in bigint range; bool is an int to Python, not to the caller.
            if isinstance(conversation_id, bool) or not isinstance(conversation_id, int) or conversation_id < 1:
                return _openai_error("`conversation_id` must be a positive whole number.")
            if conversation_id < 2**63:
                conversation = selectors.conversation_get(chatbot=bot, pk=conversation_id)
            if conversation is None:
                return _openai_error("No such conversation for this chatbot.", 404, "conversation_not_found")
        kwargs: dict[str, Any] = {
            "chatbot": bot,
            "question": question,
            "conversation": conversation,
            "channel": Channel.API,
            "user": self.org_context.user,
        }
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not body.get("stream"):
            try:
                final = chat_answer(**kwargs)
            except ChatError as exc:
                return _openai_error(exc.message, exc.status_code, exc.code)
            message = final["message"]
            return Response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": bot.slug,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": message["content"]},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": openai_usage(message),
                    "citations": message["citations"],
                    "refused": message["refused"],
                    "conversation_id": message["conversation_id"],
                }
            )

        fmt = OpenAIFormat(completion_id=completion_id, created=created, model=bot.slug)
        return sse_response(answer_sse(lambda: chat_answer_events(**kwargs), fmt, on_this_cpu=answers_on_this_cpu(bot)))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": "..."}]
        return " ".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _openai_error(message: str, status_code: int = 400, code: str = "invalid_request") -> Response:
    return Response(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}},
        status=status_code,
    )
