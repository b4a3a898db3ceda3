from django.urls import path

from kb import release_views, source_views, views, website_views

app_name = "kb"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("knowledge-bases/new/", views.knowledge_base_create, name="create"),
    path("knowledge-bases/<int:kb_id>/", views.knowledge_base_detail, name="detail"),
    path("knowledge-bases/<int:kb_id>/documents/table/", views.document_table, name="document_table"),
    path("knowledge-bases/<int:kb_id>/documents/upload/", views.document_upload, name="document_upload"),
    path("knowledge-bases/<int:kb_id>/add/<str:kind>/", views.source_add, name="source_add"),
    path(
        "knowledge-bases/<int:kb_id>/precise-ranking/",
        views.knowledge_base_precise_ranking,
        name="precise_ranking",
    ),
    path("knowledge-bases/<int:kb_id>/changes/", release_views.knowledge_base_changes, name="changes"),
    path("knowledge-bases/<int:kb_id>/review-mode/", release_views.knowledge_base_review_mode, name="review_mode"),
    path("knowledge-bases/<int:kb_id>/draft/publish/", release_views.draft_publish, name="draft_publish"),
    path("knowledge-bases/<int:kb_id>/draft/discard/", release_views.draft_discard, name="draft_discard"),
    path("knowledge-bases/<int:kb_id>/releases/<int:number>/", release_views.release_detail, name="release"),
    path(
        "knowledge-bases/<int:kb_id>/releases/<int:number>/restore/",
        release_views.release_restore,
        name="release_restore",
    ),
    path("knowledge-bases/<int:kb_id>/web-sources/new/", website_views.web_source_create, name="web_source_create"),
    path(
        "knowledge-bases/<int:kb_id>/web-sources/<int:source_id>/", website_views.web_source_detail, name="web_source"
    ),
    path(
        "knowledge-bases/<int:kb_id>/web-sources/<int:source_id>/pages/",
        website_views.web_source_pages,
        name="web_source_pages",
    ),
    path(
        "knowledge-bases/<int:kb_id>/web-sources/<int:source_id>/sync/",
        website_views.web_source_sync,
        name="web_source_sync",
    ),
    path(
        "knowledge-bases/<int:kb_id>/web-sources/<int:source_id>/schedule/",
        website_views.web_source_schedule,
        name="web_source_schedule",
    ),
    path("documents/<int:doc_id>/", views.document_detail, name="document"),
    path("documents/<int:doc_id>/file/", views.document_file, name="document_file"),
    path("documents/<int:doc_id>/source/", source_views.document_source, name="document_source"),
    path("documents/<int:doc_id>/source/page.png", source_views.document_source_page, name="document_source_page"),
    path("documents/<int:doc_id>/<str:action>/", views.document_action, name="document_action"),
]
