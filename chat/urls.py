from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("chatbots/", views.chatbot_list, name="list"),
    path("chatbots/new/", views.chatbot_create, name="create"),
    path("chatbots/<int:bot_id>/", views.chatbot_edit, name="edit"),
    path("chatbots/<int:bot_id>/playground/", views.playground, name="playground"),
    path("chatbots/<int:bot_id>/playground/chat/", views.PlaygroundChatApi.as_view(), name="playground_chat"),
    path("chatbots/<int:bot_id>/playground/retrieval/", views.playground_retrieval, name="playground_retrieval"),
]
