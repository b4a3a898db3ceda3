"""URLs of the public widget: the iframe page and its API (see `chat.widget_api`)."""

from django.urls import path

from chat import widget_api, widget_source

app_name = "widget"

urlpatterns = [
    path("widget/<str:widget_key>/", widget_api.widget_frame, name="frame"),
    path("widget/<str:widget_key>/source/<str:token>/", widget_source.widget_source, name="source"),
    path("widget/<str:widget_key>/source/<str:token>/page.png", widget_source.widget_source_page, name="source_page"),
    path("api/widget/<str:widget_key>/config", widget_api.WidgetConfigApi.as_view(), name="config"),
    path(
        "api/widget/<str:widget_key>/conversations",
        widget_api.WidgetConversationCreateApi.as_view(),
        name="conversations",
    ),
    path(
        "api/widget/<str:widget_key>/conversations/<int:conversation_id>",
        widget_api.WidgetConversationDetailApi.as_view(),
        name="conversation",
    ),
    path("api/widget/<str:widget_key>/chat", widget_api.WidgetChatApi.as_view(), name="chat"),
    path(
        "api/widget/<str:widget_key>/messages/<int:message_id>/feedback",
        widget_api.WidgetFeedbackApi.as_view(),
        name="feedback",
    ),
    path("api/widget/<str:widget_key>/lead", widget_api.WidgetLeadApi.as_view(), name="lead"),
]
