from django.urls import include, path

from chat import api

urlpatterns = [
    path("chatbots/", api.ChatbotListCreateApi.as_view(), name="api-chatbot-list"),
    path("chatbots/<str:bot_id>/", api.ChatbotDetailApi.as_view(), name="api-chatbot-detail"),
    path("chatbots/<str:bot_id>/chat/", api.ChatbotChatApi.as_view(), name="api-chatbot-chat"),
    path("", include("chat.testsets.api_urls")),
]
