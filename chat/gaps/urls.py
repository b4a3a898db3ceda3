"""Staff UI paths of the knowledge-gap inbox (included by `chat.urls`, namespace `chat`)."""

from django.urls import path

from chat.gaps import views

urlpatterns = [
    path("chatbots/<int:bot_id>/gaps/", views.gaps_page, name="gaps"),
    path("gaps/<int:pk>/answer/", views.gap_answer, name="gap_answer"),
    path("gaps/<int:pk>/out-of-scope/", views.gap_out_of_scope, name="gap_out_of_scope"),
    path("gaps/<int:pk>/dismiss/", views.gap_dismiss, name="gap_dismiss"),
]
