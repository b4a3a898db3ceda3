from django.urls import path

from chat import review_views, settings_views, views
from chat.gaps.urls import urlpatterns as gaps_urlpatterns
from chat.replay import views as replay_views
from chat.testsets.urls import urlpatterns as testsets_urlpatterns

app_name = "chat"

urlpatterns = [
    path("chatbots/", views.chatbot_list, name="list"),
    path("chatbots/new/", views.chatbot_create, name="create"),
    path("chatbots/model-check/", views.chatbot_model_check, name="model_check"),
    path("chatbots/<int:bot_id>/", views.chatbot_edit, name="edit"),
    path("chatbots/<int:bot_id>/playground/", views.playground, name="playground"),
    path("chatbots/<int:bot_id>/widget-demo/", views.widget_demo, name="widget_demo"),
    path("first-run/", views.first_run, name="first_run"),
    path("chatbots/<int:bot_id>/playground/chat/", views.PlaygroundChatApi.as_view(), name="playground_chat"),
    path("chatbots/<int:bot_id>/playground/retrieval/", views.playground_retrieval, name="playground_retrieval"),
    path("conversations/", review_views.conversation_list, name="conversations"),
    path("conversations/<int:pk>/", review_views.conversation_detail, name="conversation"),
    path("conversations/<int:pk>/<str:action>/", review_views.conversation_action, name="conversation_action"),
    path("analytics/", review_views.analytics_dashboard, name="analytics"),
    *testsets_urlpatterns,
    *gaps_urlpatterns,
    path("knowledge-bases/<int:kb_id>/draft-tools/", replay_views.draft_tools, name="draft_tools"),
    path("knowledge-bases/<int:kb_id>/replay/", replay_views.replay_start, name="replay_start"),
    path("replays/<int:pk>/", replay_views.replay_detail, name="replay"),
]

#: Pages that belong to the `accounts` URL namespace but live in chat (they edit chat's models);
#: `config/urls.py` mounts them under `accounts/` next to `accounts.urls`.
accounts_urlpatterns = [
    path("settings/", settings_views.organization_settings, name="settings"),
]
