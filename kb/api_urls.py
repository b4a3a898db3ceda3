from django.urls import path

from kb import api, release_api, website_api

urlpatterns = [
    path("knowledge-bases/", api.KnowledgeBaseListCreateApi.as_view(), name="api-kb-list"),
    path("knowledge-bases/<int:kb_id>/", api.KnowledgeBaseDetailApi.as_view(), name="api-kb-detail"),
    path("knowledge-bases/<int:kb_id>/documents/", api.DocumentListUploadApi.as_view(), name="api-kb-documents"),
    path("knowledge-bases/<int:kb_id>/texts/", api.TextEntryCreateApi.as_view(), name="api-kb-texts"),
    path("knowledge-bases/<int:kb_id>/qa/", api.QaEntryCreateApi.as_view(), name="api-kb-qa"),
    path("knowledge-bases/<int:kb_id>/urls/", api.UrlEntryCreateApi.as_view(), name="api-kb-urls"),
    path("knowledge-bases/<int:kb_id>/search/", api.KnowledgeBaseSearchApi.as_view(), name="api-kb-search"),
    path(
        "knowledge-bases/<int:kb_id>/web-sources/",
        website_api.WebSourceListCreateApi.as_view(),
        name="api-kb-web-sources",
    ),
    path(
        "knowledge-bases/<int:kb_id>/web-sources/<int:source_id>/",
        website_api.WebSourceDetailApi.as_view(),
        name="api-kb-web-source",
    ),
    path(
        "knowledge-bases/<int:kb_id>/web-sources/<int:source_id>/sync/",
        website_api.WebSourceSyncApi.as_view(),
        name="api-kb-web-source-sync",
    ),
    path("documents/<int:doc_id>/", api.DocumentDetailApi.as_view(), name="api-document-detail"),
    path(
        "documents/<int:doc_id>/versions/", release_api.DocumentVersionCreateApi.as_view(), name="api-document-versions"
    ),
    path("knowledge-bases/<int:kb_id>/draft/", release_api.DraftApi.as_view(), name="api-kb-draft"),
    path("knowledge-bases/<int:kb_id>/draft/publish/", release_api.DraftPublishApi.as_view(), name="api-kb-publish"),
    path("knowledge-bases/<int:kb_id>/draft/discard/", release_api.DraftDiscardApi.as_view(), name="api-kb-discard"),
    path("knowledge-bases/<int:kb_id>/releases/", release_api.ReleaseListApi.as_view(), name="api-kb-releases"),
    path(
        "knowledge-bases/<int:kb_id>/releases/<int:number>/restore/",
        release_api.ReleaseRestoreApi.as_view(),
        name="api-kb-restore",
    ),
]
