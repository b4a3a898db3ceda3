from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from chat.api import ChatCompletionsApi
from config.health import healthz

urlpatterns = [
    path("", include("kb.urls")),
    path("", include("chat.urls")),
    path("", include("chat.widget_urls")),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("kb.api_urls")),
    path("api/v1/", include("chat.api_urls")),
    path("api/v1/", include("chat.review_urls")),
    path("v1/chat/completions", ChatCompletionsApi.as_view(), name="openai-chat-completions"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-docs"),
]
