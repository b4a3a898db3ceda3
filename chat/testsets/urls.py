"""Staff UI paths of test sets and evaluations (included by `chat.urls`, namespace `chat`)."""

from django.urls import path

from chat.testsets import views

urlpatterns = [
    path("chatbots/<int:bot_id>/tests/", views.tests_page, name="tests"),
    path("chatbots/<int:bot_id>/tests/add/", views.case_add, name="test_case_add"),
    path("chatbots/<int:bot_id>/tests/import/", views.cases_import, name="test_cases_import"),
    path("chatbots/<int:bot_id>/tests/<int:pk>/delete/", views.case_delete, name="test_case_delete"),
    path("chatbots/<int:bot_id>/tests/run/", views.run_start, name="eval_run_start"),
    path("evaluations/<int:pk>/", views.run_detail, name="eval_run"),
    path("evaluations/<int:pk>/progress/", views.run_progress, name="eval_run_progress"),
    path("evaluations/<int:pk>/cancel/", views.run_cancel, name="eval_run_cancel"),
    path("evaluations/<int:pk>/apply-settings/", views.run_apply_settings, name="eval_run_apply_settings"),
    path("evaluations/compare/", views.runs_compare, name="eval_compare"),
    path("messages/<int:pk>/add-to-tests/", views.message_add_to_tests, name="message_add_to_tests"),
]
