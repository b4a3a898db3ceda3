"""API paths of the knowledge-gap inbox (included under /api/v1/ by `chat.api_urls`)."""

from django.urls import path

from chat.gaps import api

urlpatterns = [
    path("chatbots/<str:bot_id>/gaps/", api.ChatbotGapsApi.as_view(), name="api-chatbot-gaps"),
    path("gaps/<int:pk>/", api.GapDetailApi.as_view(), name="api-gap-detail"),
    path("gaps/<int:pk>/answer/", api.GapAnswerApi.as_view(), name="api-gap-answer"),
    path("gaps/<int:pk>/out-of-scope/", api.GapOutOfScopeApi.as_view(), name="api-gap-out-of-scope"),
    path("gaps/<int:pk>/dismiss/", api.GapDismissApi.as_view(), name="api-gap-dismiss"),
]
