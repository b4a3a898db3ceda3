"""API paths of test sets and evaluations (included under /api/v1/ by `chat.api_urls`)."""

from django.urls import path

from chat.testsets import api as testsets_api

urlpatterns = [
    path("chatbots/<str:bot_id>/test-cases/", testsets_api.CaseListCreateApi.as_view(), name="api-testcase-list"),
    path("chatbots/<str:bot_id>/test-cases/import/", testsets_api.CaseImportApi.as_view(), name="api-testcase-import"),
    path("chatbots/<str:bot_id>/test-cases/export/", testsets_api.CaseExportApi.as_view(), name="api-testcase-export"),
    path("chatbots/<str:bot_id>/test-cases/<int:pk>/", testsets_api.CaseDetailApi.as_view(), name="api-testcase"),
    path("chatbots/<str:bot_id>/evaluations/", testsets_api.EvalListCreateApi.as_view(), name="api-eval-list"),
    path("evaluations/compare/", testsets_api.EvalCompareApi.as_view(), name="api-eval-compare"),
    path("evaluations/<int:pk>/", testsets_api.EvalDetailApi.as_view(), name="api-eval-detail"),
    path("evaluations/<int:pk>/cancel/", testsets_api.EvalCancelApi.as_view(), name="api-eval-cancel"),
    path("evaluations/<int:pk>/apply-settings/", testsets_api.EvalApplySettingsApi.as_view(), name="api-eval-apply"),
    path("messages/<int:pk>/test-case/", testsets_api.MessageCaseApi.as_view(), name="api-message-testcase"),
]
