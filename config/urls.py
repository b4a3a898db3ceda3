from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from accounts.urls import urlpatterns as accounts_urlpatterns
from chat.api import ChatCompletionsApi
from chat.urls import accounts_urlpatterns as chat_accounts_urlpatterns
from config.health import healthz, healthz_ready

urlpatterns = [
    path("", include("kb.urls")),
    path("", include("chat.urls")),
    path("", include("chat.widget_urls")),
    # The accounts namespace, plus the settings page that edits chat's provider keys (no accounts -> chat import).
    path("accounts/", include((accounts_urlpatterns + chat_accounts_urlpatterns, "accounts"))),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("healthz/ready", healthz_ready, name="healthz-ready"),
    path("api/v1/", include("kb.api_urls")),
    path("api/v1/", include("chat.api_urls")),
    path("api/v1/", include("chat.review_urls")),
    path("v1/chat/completions", ChatCompletionsApi.as_view(), name="openai-chat-completions"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-docs"),
]

# Unmatched API URLs answer JSON, not the HTML error page.
handler404 = "config.api.page_not_found"
