from django.urls import path

from chat import review_api

urlpatterns = [
    path("conversations/", review_api.ConversationListApi.as_view(), name="api-conversation-list"),
    path("conversations/export/", review_api.ConversationExportApi.as_view(), name="api-conversation-export"),
    path("conversations/<int:pk>/", review_api.ConversationDetailApi.as_view(), name="api-conversation-detail"),
    path("messages/<int:pk>/feedback/", review_api.MessageFeedbackApi.as_view(), name="api-message-feedback"),
    path("messages/<int:pk>/correction/", review_api.MessageCorrectionApi.as_view(), name="api-message-correction"),
]
