from django.urls import include, path

from chat import api
from chat.replay import api as replay_api

urlpatterns = [
    path("chatbots/", api.ChatbotListCreateApi.as_view(), name="api-chatbot-list"),
    path("chatbots/<str:bot_id>/", api.ChatbotDetailApi.as_view(), name="api-chatbot-detail"),
    path("chatbots/<str:bot_id>/chat/", api.ChatbotChatApi.as_view(), name="api-chatbot-chat"),
    path("", include("chat.testsets.api_urls")),
    path("", include("chat.gaps.api_urls")),
    path("knowledge-bases/<int:kb_id>/draft/replay/", replay_api.DraftReplayApi.as_view(), name="api-kb-replay"),
    path("replays/<int:replay_id>/", replay_api.ReplayDetailApi.as_view(), name="api-replay-detail"),
]
