from django.urls import path

from kb import api

urlpatterns = [
    path("knowledge-bases/", api.KnowledgeBaseListCreateApi.as_view(), name="api-kb-list"),
    path("knowledge-bases/<int:kb_id>/", api.KnowledgeBaseDetailApi.as_view(), name="api-kb-detail"),
    path("knowledge-bases/<int:kb_id>/documents/", api.DocumentListUploadApi.as_view(), name="api-kb-documents"),
    path("knowledge-bases/<int:kb_id>/texts/", api.TextEntryCreateApi.as_view(), name="api-kb-texts"),
    path("knowledge-bases/<int:kb_id>/qa/", api.QaEntryCreateApi.as_view(), name="api-kb-qa"),
    path("knowledge-bases/<int:kb_id>/urls/", api.UrlEntryCreateApi.as_view(), name="api-kb-urls"),
    path("knowledge-bases/<int:kb_id>/search/", api.KnowledgeBaseSearchApi.as_view(), name="api-kb-search"),
    path("documents/<int:doc_id>/", api.DocumentDetailApi.as_view(), name="api-document-detail"),
]
