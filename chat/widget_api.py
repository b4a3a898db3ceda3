"""The public widget: its iframe page and its JSON/SSE API, keyed by the bot's public widget key.

No session, no CSRF, no API key: these views authenticate nothing but the widget key, the
website's origin and (for a conversation) the visitor token — see `chat.widget_services`. They
never look at `request.user`, so a signed-in staff member's cookies grant nothing here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.client_ip import client_ip
from accounts.parsers import SafeJSONParser
from chat import widget_services as ws
from chat.answer_turns import answers_on_this_cpu
from chat.exceptions import ChatError
from chat.models import Chatbot
from chat.sse import WidgetFormat, answer_sse, database_busy, sse_response
from chat.widget import frame_content_security_policy, normalize_origin

HOST_HEADER = "X-Groundwork-Host"

# The widget API's bodies, for the OpenAPI schema (the views read the JSON leniently themselves).
WIDGET_CONFIG_OUT = inline_serializer(
    "WidgetConfig",
    {
        "name": serializers.CharField(),
        "title": serializers.CharField(),
        "avatar": serializers.CharField(),
        "theme_color": serializers.CharField(),
        "position": serializers.CharField(help_text="left or right"),
        "welcome_message": serializers.CharField(allow_blank=True),
        "suggested_questions": serializers.ListField(child=serializers.CharField()),
        "lead_capture": serializers.BooleanField(),
        "max_message_chars": serializers.IntegerField(),
    },
)
WIDGET_START_IN = inline_serializer("WidgetStartIn", {"visitor_id": serializers.CharField(required=False)})
WIDGET_START_OUT = inline_serializer(
    "WidgetStarted", {"conversation_id": serializers.IntegerField(), "visitor_token": serializers.CharField()}
)
WIDGET_CONVERSATION_OUT = inline_serializer(
    "WidgetConversation",
    {
        "conversation_id": serializers.IntegerField(),
        "lead_captured": serializers.BooleanField(),
        "messages": serializers.ListField(child=serializers.DictField()),
    },
)
WIDGET_CHAT_IN = inline_serializer(
    "WidgetChatIn",
    {
        "message": serializers.CharField(),
        "conversation_id": serializers.IntegerField(),
        "visitor_token": serializers.CharField(),
    },
)
WIDGET_FEEDBACK_IN = inline_serializer(
    "WidgetFeedbackIn",
    {
        "value": serializers.ChoiceField(choices=("up", "down", "")),
        "comment": serializers.CharField(required=False, allow_blank=True),
        "visitor_token": serializers.CharField(),
    },
)
WIDGET_FEEDBACK_OUT = inline_serializer(
    "WidgetFeedbackOut", {"message_id": serializers.IntegerField(), "feedback": serializers.CharField(allow_blank=True)}
)
WIDGET_LEAD_IN = inline_serializer(
    "WidgetLeadIn",
    {
        "conversation_id": serializers.IntegerField(),
        "visitor_token": serializers.CharField(),
        "email": serializers.EmailField(),
        "name": serializers.CharField(required=False, allow_blank=True),
        "message": serializers.CharField(required=False, allow_blank=True),
    },
)
WIDGET_LEAD_OUT = inline_serializer(
    "WidgetLeadOut", {"conversation_id": serializers.IntegerField(), "lead_captured": serializers.BooleanField()}
)


def _own_origins(request: HttpRequest) -> set[str]:
    """The app's own origins: the one this request was addressed to, and the public URL's."""
    origins = {normalize_origin(f"{request.scheme}://{request.get_host()}")}
    if settings.PUBLIC_URL:
        public = urlsplit(settings.PUBLIC_URL)
        origins.add(normalize_origin(f"{public.scheme}://{public.netloc}"))
    return {origin for origin in origins if origin}


def _request_origin(request: HttpRequest) -> str | None:
    """The origin the browser vouches for. Same-origin GETs carry no `Origin`, but do carry Sec-Fetch-Site."""
    origin = request.headers.get("Origin")
    if origin:
        return origin
    if request.headers.get("Sec-Fetch-Site") == "same-origin":
        return f"{request.scheme}://{request.get_host()}"
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class WidgetApiView(APIView):
    """Base of the widget API: origin check, CORS for allowed origins only, errors as JSON."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = ()
    parser_classes = (SafeJSONParser,)
    renderer_classes = (JSONRenderer,)
    cors_origin: str | None = None

    def widget(self, request: Request, widget_key: str, *, write: bool, visitor_token: str = "") -> tuple[Chatbot, str]:
        """The bot and the website (host origin) of an allowed request; raises `WidgetError` otherwise."""
        bot = ws.widget_bot_get(widget_key=widget_key)
        host = ws.widget_host_origin(
            chatbot=bot,
            request_origin=_request_origin(request),
            claimed_host=(request.headers.get(HOST_HEADER) or "")[:300],
            own_origins=_own_origins(request),
        )
        self.cors_origin = normalize_origin(request.headers.get("Origin") or "")
        ws.widget_check_enabled(chatbot=bot)
        if write:
            ws.widget_rate_limit_hit(
                chatbot=bot,
                visitor=ws.visitor_rate_key(visitor_token=visitor_token, client_ip=client_ip(request)),
            )
        return bot, host

    def body(self, request: Request) -> dict[str, Any]:
        return request.data if isinstance(request.data, dict) else {}

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        """CORS preflight: answered for allowed origins only."""
        bot = ws.widget_bot_get(widget_key=kwargs["widget_key"])
        origin = request.headers.get("Origin")
        ws.widget_host_origin(chatbot=bot, request_origin=origin, claimed_host=None, own_origins=_own_origins(request))
        self.cors_origin = normalize_origin(origin or "")
        response = Response(status=204)
        response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = f"Content-Type, {HOST_HEADER}"
        response["Access-Control-Max-Age"] = "600"
        return response

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, ChatError):
            body: dict[str, Any] = {"error": exc.code, "detail": exc.message}
            retry_after = getattr(exc, "retry_after", None)
            if retry_after:
                body["retry_after"] = retry_after
            response = Response(body, status=exc.status_code)
            if retry_after:
                response["Retry-After"] = str(retry_after)
            return response
        if database_busy(exc) and not self.cors_origin:
            # Busy before the origin could be checked (that needs the database): let the widget read
            # the 503 anyway; it holds nothing but "try again".
            self.cors_origin = normalize_origin(self.request.headers.get("Origin") or "")
        return super().handle_exception(exc)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        patch_vary_headers(response, ("Origin",))
        if self.cors_origin:
            # No Allow-Credentials: the widget never uses cookies.
            response["Access-Control-Allow-Origin"] = self.cors_origin
        response.setdefault("Cache-Control", "no-store")
        return response


class WidgetConfigApi(WidgetApiView):
    @extend_schema(responses=WIDGET_CONFIG_OUT)
    def get(self, request: Request, widget_key: str) -> Response:
        bot, _ = self.widget(request, widget_key, write=False)
        return Response(ws.widget_config(chatbot=bot))


class WidgetConversationCreateApi(WidgetApiView):
    @extend_schema(request=WIDGET_START_IN, responses={201: WIDGET_START_OUT})
    def post(self, request: Request, widget_key: str) -> Response:
        bot, host = self.widget(request, widget_key, write=True)
        visitor_id = self.body(request).get("visitor_id")
        started = ws.widget_conversation_start(
            chatbot=bot, origin=host, visitor_id=visitor_id if isinstance(visitor_id, str) else ""
        )
        return Response(
            {"conversation_id": started.conversation.pk, "visitor_token": started.visitor_token}, status=201
        )


class WidgetConversationDetailApi(WidgetApiView):
    @extend_schema(
        parameters=[OpenApiParameter("token", str, description="the visitor token")],
        responses=WIDGET_CONVERSATION_OUT,
    )
    def get(self, request: Request, widget_key: str, conversation_id: int) -> Response:
        bot, _ = self.widget(request, widget_key, write=False)
        conversation = ws.widget_conversation_get(
            chatbot=bot, conversation_id=conversation_id, visitor_token=request.query_params.get("token", "")
        )
        return Response(
            {
                "conversation_id": conversation.pk,
                "lead_captured": bool(conversation.lead_email),
                "messages": ws.widget_conversation_messages(conversation=conversation),
            }
        )


class WidgetChatApi(WidgetApiView):
    """One question, answered as server-sent events: `start`, `delta`…, `final` (or `error`)."""

    # A visitor waits for the first sign of an answer: served before other requests (config.lanes).
    urgent_request = True

    @extend_schema(request=WIDGET_CHAT_IN, responses={(200, "text/event-stream"): OpenApiTypes.OBJECT})
    def post(self, request: Request, widget_key: str) -> StreamingHttpResponse:
        data = self.body(request)
        token = str(data.get("visitor_token") or "")
        bot, _ = self.widget(request, widget_key, write=True, visitor_token=token)
        question = ws.widget_question_clean(data.get("message"))
        conversation = ws.widget_conversation_get(
            chatbot=bot, conversation_id=_int_or_none(data.get("conversation_id")), visitor_token=token
        )

        fmt = WidgetFormat(bot_id=bot.pk, conversation_id=conversation.pk)
        return sse_response(
            answer_sse(
                lambda: ws.widget_answer_events(chatbot=bot, conversation=conversation, question=question),
                fmt,
                on_this_cpu=answers_on_this_cpu(bot),
            )
        )


class WidgetFeedbackApi(WidgetApiView):
    @extend_schema(request=WIDGET_FEEDBACK_IN, responses=WIDGET_FEEDBACK_OUT)
    def post(self, request: Request, widget_key: str, message_id: int) -> Response:
        data = self.body(request)
        token = str(data.get("visitor_token") or "")
        bot, _ = self.widget(request, widget_key, write=True, visitor_token=token)
        message = ws.widget_feedback_set(
            chatbot=bot,
            message_id=message_id,
            visitor_token=token,
            value=data.get("value"),
            comment=data.get("comment"),
        )
        return Response({"message_id": message.pk, "feedback": message.feedback})


class WidgetLeadApi(WidgetApiView):
    @extend_schema(request=WIDGET_LEAD_IN, responses=WIDGET_LEAD_OUT)
    def post(self, request: Request, widget_key: str) -> Response:
        data = self.body(request)
        token = str(data.get("visitor_token") or "")
        bot, _ = self.widget(request, widget_key, write=True, visitor_token=token)
        conversation = ws.widget_lead_set(
            chatbot=bot,
            conversation_id=_int_or_none(data.get("conversation_id")),
            visitor_token=token,
            email=data.get("email"),
            name=data.get("name"),
            message=data.get("message"),
        )
        return Response({"conversation_id": conversation.pk, "lead_captured": True})


@xframe_options_exempt  # framing is governed by the CSP's frame-ancestors instead
@require_GET
def widget_frame(request: HttpRequest, widget_key: str) -> HttpResponse:
    """The chat window, loaded by widget.js in an iframe with `?origin=<the website's origin>`.

    Allowed website: the chat, framable only by the bot's allowed origins (and the app itself).
    Anything else: a page that says why, framable anywhere (it holds nothing else), so the
    visitor and the site owner see a clear message instead of a blank box.
    """
    own_origins = _own_origins(request)
    claimed = request.GET.get("origin") or f"{request.scheme}://{request.get_host()}"
    parent_origin = normalize_origin(claimed)
    try:
        bot = ws.widget_bot_get(widget_key=widget_key)
        if not ws.widget_origin_allowed(chatbot=bot, origin=parent_origin, own_origins=own_origins):
            raise ws.WidgetError(
                "origin_not_allowed",
                f"This chat is not enabled on {parent_origin or 'this website'}. The site owner can add the "
                "website under the chatbot's allowed origins.",
                status_code=403,
            )
        ws.widget_check_enabled(chatbot=bot)
    except ws.WidgetError as exc:
        response = HttpResponse(
            render_to_string(
                "chat/widget_frame.html",
                {
                    "refusal": exc.message,
                    "config": {"parent_origin": parent_origin or "*", "refusal": exc.code},
                    "title": "Chat unavailable",
                },
            ),
            status=exc.status_code,
        )
        response["Content-Security-Policy"] = frame_content_security_policy(frame_ancestors=None)
        response["Cache-Control"] = "no-store"
        return response

    config = {
        **ws.widget_config(chatbot=bot),
        "key": bot.widget_key,
        "api": reverse("widget:config", args=[bot.widget_key]).rsplit("/", 1)[0],
        "parent_origin": parent_origin,
    }
    # Rendered without the request: no context processors, so no session is read or cookie set.
    response = HttpResponse(render_to_string("chat/widget_frame.html", {"config": config, "title": config["title"]}))
    response["Content-Security-Policy"] = frame_content_security_policy(frame_ancestors=bot.allowed_origins)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "strict-origin"
    return response
