from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("organization/switch/", views.organization_switch, name="organization_switch"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("team/", views.team, name="team"),
    path("team/<str:action>/", views.team_action, name="team_action"),
    # "settings/" (accounts:settings) is chat.settings_views.organization_settings, mounted by config/urls.py.
    path("settings/api-keys/", views.api_keys, name="api_keys"),
    path("settings/audit/", views.audit_log, name="audit_log"),
]
