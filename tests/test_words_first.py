"""Words first: a long new document answers by its words while its vectors are still computed.

The stages run in this process, one by one, so each test can look at the moment between the
keyword index and the vectors (through the real worker that moment lasts seconds on a long PDF,
too short to catch reliably). Statistics and postings must equal a rebuild at every step.
"""

from __future__ import annotations

from io import BytesIO
from unittest import mock

import pytest
from django.db import connection
from django.test import Client

from accounts.models import Role
from accounts.services import organization_create
from kb import embedding as embedding_api
from kb import services
from kb.exceptions import EmbeddingError, TransientEmbeddingError
from kb.models import Document, DocumentStatus, DocumentVersion, KnowledgeBase, Release
from kb.pipeline import recover, warm
from kb.pipeline.claim import EMBED_LATER, claim
from kb.pipeline.job import Job
from kb.pipeline.publish import publish, publish_words_first
from kb.pipeline.run import STAGES, version_embed, version_ingest
from kb.selectors import chunk_search
from tests.conftest import wait_for
from tests.test_pipeline_index import _assert_equal_to_a_rebuild
from tests.test_pipeline_warm import HANG_GUARD_S, _in_thread, pool_process_warming_up

pytestmark = pytest.mark.django_db(transaction=True)

HANDBOOK = "\n\n".join(
    f"# Part {i}\n\nThe {name} team meets on {day} in room {100 + i} to review the {topic} budget. "
    + " ".join(f"Agenda item {k} of part {i} is read aloud and minuted by the secretary." for k in range(12))
    for i, (name, day, topic) in enumerate(
        [
            ("harbour", "Monday", "ferry"),
            ("orchard", "Tuesday", "cider"),
            ("glacier", "Wednesday", "skiing"),
            ("lantern", "Thursday", "lighting"),
            ("meadow", "Friday", "grazing"),
        ]
    )
).encode()
REPLACEMENT = HANDBOOK.replace(b"harbour", b"quarry")
WORDS_STAGES = STAGES[: STAGES.index(publish_words_first) + 1]


@pytest.fixture
def knowledge_base(settings) -> KnowledgeBase:  # type: ignore[no-untyped-def]
    settings.GROUNDWORK_WORDS_FIRST_CHUNKS = 3  # the handbook is 5 chunks: "long" for these tests
    org = organization_create(name="Words first")
    kb = services.knowledge_base_create(organization=org, name="Handbook", created_by=None)
    return kb


def _upload(
    kb: KnowledgeBase, content: bytes = HANDBOOK, document: Document | None = None, filename: str = "handbook.md"
) -> DocumentVersion:
    result = services.document_upload(
        knowledge_base=kb,
        upload=BytesIO(content),
        filename=filename,
        uploaded_by=None,
        replace_document=document,
        enqueue=False,
    )
    return result.version


def _until_words(version: DocumentVersion) -> Job:
    """Run the stages up to and including words-first publishing."""
    job = claim(version_id=version.pk, worker="test")
    assert job is not None
    for stage in WORDS_STAGES:
        stage(job)
    return job


def _finish(job: Job) -> None:
    for stage in STAGES[STAGES.index(publish_words_first) + 1 :]:
        stage(job)


def _in_own_thread(target):  # type: ignore[no-untyped-def]
    """`target` in a thread with its own database connection (closed when it ends)."""

    def run():  # type: ignore[no-untyped-def]
        try:
            return target()
        finally:
            connection.close()

    return _in_thread(run)


def _found(kb: KnowledgeBase, query: str, mode: str) -> list[str]:
    hits = chunk_search(knowledge_bases=[kb], query=query, mode=mode, limit=10)
    return [h.chunk.text for h in hits if h.chunk is not None]


def test_a_long_new_document_answers_by_its_words_while_it_embeds(knowledge_base) -> None:  # type: ignore[no-untyped-def]
    version = _upload(knowledge_base)
    job = _until_words(version)

    version.refresh_from_db()
    assert version.status == DocumentStatus.EMBEDDING and version.chunks_embedded == 0
    assert version.chunks_total >= 5
    assert version.searchable_at is not None
    assert any("glacier" in t for t in _found(knowledge_base, "glacier team skiing", "keyword"))
    assert any("glacier" in t for t in _found(knowledge_base, "glacier team skiing", "hybrid"))
    assert _found(knowledge_base, "glacier team skiing", "vector") == []  # no vectors yet
    _assert_equal_to_a_rebuild(knowledge_base.pk)
    # Releases record whole versions only: none yet, and the document has no live version.
    assert Document.objects.get(pk=version.document_id).live_version_id is None
    assert not Release.objects.filter(knowledge_base=knowledge_base).exists()

    _finish(job)
    version.refresh_from_db()
    assert version.status == DocumentStatus.READY
    assert Document.objects.get(pk=version.document_id).live_version_id == version.pk
    assert any("glacier" in t for t in _found(knowledge_base, "glacier team skiing", "vector"))
    _assert_equal_to_a_rebuild(knowledge_base.pk)
    releases = list(Release.objects.filter(knowledge_base=knowledge_base))
    assert [c["action"] for r in releases for c in r.changes] == ["add"]


def test_the_api_and_the_document_table_say_a_document_answers_while_it_embeds(  # type: ignore[no-untyped-def]
    knowledge_base, api_client_for, make_user
) -> None:
    version = _upload(knowledge_base)
    client = api_client_for(knowledge_base.organization)
    staff = Client()
    staff.force_login(make_user(knowledge_base.organization, role=Role.EDITOR))
    table = f"/knowledge-bases/{knowledge_base.pk}/documents/table/"
    assert client.get(f"/api/v1/documents/{version.document_id}/").json()["searchable_at"] is None
    assert 'data-searchable="words"' not in staff.get(table).content.decode()

    _until_words(version)
    during = client.get(f"/api/v1/documents/{version.document_id}/").json()
    assert during["status"] == "embedding" and during["searchable_at"] is not None
    assert "Answers from its words already" in staff.get(table).content.decode()


def test_a_document_that_fails_while_embedding_leaves_search(knowledge_base) -> None:  # type: ignore[no-untyped-def]
    version = _upload(knowledge_base)
    with mock.patch.object(embedding_api, "embed_passages", side_effect=EmbeddingError("model refused the input")):
        version_ingest(version_id=version.pk, worker="test")
    version.refresh_from_db()
    assert version.status == DocumentStatus.FAILED and "model refused" in version.error_message
    assert version.searchable_at is None
    assert _found(knowledge_base, "glacier team skiing", "keyword") == []
    _assert_equal_to_a_rebuild(knowledge_base.pk)


def test_a_retried_run_replaces_what_went_live_by_its_words(knowledge_base) -> None:  # type: ignore[no-untyped-def]
    version = _upload(knowledge_base)
    _until_words(version)
    DocumentVersion.objects.filter(pk=version.pk).update(status=DocumentStatus.QUEUED)  # a transient error
    version_ingest(version_id=version.pk, worker="test")
    version.refresh_from_db()
    assert version.status == DocumentStatus.READY and version.attempts == 2
    assert sum("glacier" in t for t in _found(knowledge_base, "glacier team skiing", "keyword")) == 1  # not twice
    _assert_equal_to_a_rebuild(knowledge_base.pk)


def test_a_replacement_waits_for_its_vectors_and_the_live_version_answers_meanwhile(knowledge_base) -> None:  # type: ignore[no-untyped-def]
    first = _upload(knowledge_base)
    version_ingest(version_id=first.pk, worker="test")
    second = _upload(knowledge_base, REPLACEMENT, document=first.document)
    job = _until_words(second)
    second.refresh_from_db()
    assert second.searchable_at is None
    texts = _found(knowledge_base, "harbour quarry team ferry", "keyword")
    assert any("harbour" in t for t in texts) and not any("quarry" in t for t in texts)
    _finish(job)
    texts = _found(knowledge_base, "harbour quarry team ferry", "keyword")
    assert any("quarry" in t for t in texts) and not any("harbour" in t for t in texts)
    _assert_equal_to_a_rebuild(knowledge_base.pk)


def test_switching_off_or_deleting_a_document_while_it_embeds_takes_it_out_of_search(knowledge_base) -> None:  # type: ignore[no-untyped-def]
    version = _upload(knowledge_base)
    job = _until_words(version)
    document = Document.objects.get(pk=version.document_id)
    services.document_set_enabled(document=document, enabled=False)
    assert _found(knowledge_base, "glacier team skiing", "keyword") == []
    _assert_equal_to_a_rebuild(knowledge_base.pk)
    _finish(job)  # the switch holds when it is whole
    assert _found(knowledge_base, "glacier team skiing", "keyword") == []
    _assert_equal_to_a_rebuild(knowledge_base.pk)

    other = _upload(knowledge_base, REPLACEMENT, filename="quarry.md")
    _until_words(other)
    assert any("quarry" in t for t in _found(knowledge_base, "quarry team ferry", "keyword"))
    services.document_delete(document=Document.objects.get(pk=other.document_id))
    assert _found(knowledge_base, "quarry team ferry", "keyword") == []
    _assert_equal_to_a_rebuild(knowledge_base.pk)


@pytest.fixture
def embedder_loading(monkeypatch: pytest.MonkeyPatch) -> warm.WarmUp:
    """A pool process just after a worker start: its text parser is loaded, its embedder is not."""
    return pool_process_warming_up(monkeypatch, loaded=("text",))


def test_a_short_document_answers_by_its_words_while_a_fresh_worker_loads_its_model(  # type: ignore[no-untyped-def]
    knowledge_base, settings, embedder_loading
) -> None:
    settings.GROUNDWORK_WORDS_FIRST_CHUNKS = 50  # the handbook is short by this measure
    version = _upload(knowledge_base, filename="handbook.txt")  # plain text: needs no other parser
    job = _until_words(version)
    assert any("glacier" in t for t in _found(knowledge_base, "glacier team skiing", "keyword"))

    # The embed stage waits for the model: it embeds only once the warm-up has loaded it.
    loaded_when_embedding: list[bool] = []
    real_embed_passages = embedding_api.embed_passages

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        loaded_when_embedding.append(embedder_loading.embedder.is_set())
        return real_embed_passages(*args, **kwargs)

    def finish() -> None:
        with mock.patch.object(embedding_api, "embed_passages", recording):
            _finish(job)

    thread, outcome = _in_own_thread(finish)
    thread.join(1.0)
    assert thread.is_alive() and not loaded_when_embedding  # waiting for the model, not embedding without it
    embedder_loading.embedder.set()  # the model has loaded
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert loaded_when_embedding and all(loaded_when_embedding)
    version.refresh_from_db()
    assert version.status == DocumentStatus.READY
    assert any("glacier" in t for t in _found(knowledge_base, "glacier team skiing", "vector"))
    _assert_equal_to_a_rebuild(knowledge_base.pk)


def test_short_documents_and_review_mode_wait_for_their_vectors(knowledge_base, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GROUNDWORK_WORDS_FIRST_CHUNKS = 50
    version = _upload(knowledge_base)
    _until_words(version)
    assert _found(knowledge_base, "glacier team skiing", "keyword") == []

    settings.GROUNDWORK_WORDS_FIRST_CHUNKS = 3
    KnowledgeBase.objects.filter(pk=knowledge_base.pk).update(review_changes=True)
    knowledge_base.refresh_from_db()
    staged = _upload(knowledge_base, REPLACEMENT, filename="quarry.md")
    job = _until_words(staged)
    assert _found(knowledge_base, "quarry team ferry", "keyword") == []
    publish(job)
    _assert_equal_to_a_rebuild(knowledge_base.pk)


def test_a_fresh_worker_leaves_the_vectors_of_a_document_found_by_its_words_to_the_embed_task(  # type: ignore[no-untyped-def]
    knowledge_base, settings, embedder_loading
) -> None:
    settings.GROUNDWORK_WORDS_FIRST_CHUNKS = 50
    version = _upload(knowledge_base, filename="handbook.txt")
    # The run ends without waiting for the model: the pool process is free for the next upload.
    thread, outcome = _in_own_thread(lambda: version_ingest(version_id=version.pk, worker="w1"))
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive() and outcome.get("value") is True, outcome
    version.refresh_from_db()
    assert version.status == DocumentStatus.EMBEDDING and version.claimed_by == EMBED_LATER
    assert any("glacier" in t for t in _found(knowledge_base, "glacier team skiing", "keyword"))
    assert _found(knowledge_base, "glacier team skiing", "vector") == []
    # Its message lost (a Redis restart): a worker start sends the embed task again.
    assert recover.recover_after_worker_restart(worker="w2").embed == [version.pk]

    # The embed task waits for the model, then embeds the stored chunks and publishes.
    thread, outcome = _in_own_thread(lambda: version_embed(version_id=version.pk, worker="w2"))
    thread.join(1.0)
    assert thread.is_alive()
    embedder_loading.embedder.set()
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive() and "error" not in outcome, outcome
    version.refresh_from_db()
    assert version.status == DocumentStatus.READY and version.chunks_embedded == version.chunks_total
    assert Document.objects.get(pk=version.document_id).live_version_id == version.pk
    vector_hits = _found(knowledge_base, "glacier team skiing", "vector")
    assert sum("glacier" in t for t in vector_hits) == 1
    _assert_equal_to_a_rebuild(knowledge_base.pk)
    version_embed(version_id=version.pk, worker="w3")  # a duplicate message: nothing to do
    assert recover.embed_later_version_ids() == []


def test_a_replacement_is_embedded_in_its_own_run_even_while_the_model_loads(  # type: ignore[no-untyped-def]
    knowledge_base, settings, embedder_loading
) -> None:
    embedder_loading.embedder.set()
    first = _upload(knowledge_base, filename="handbook.txt")
    assert version_ingest(version_id=first.pk, worker="w1") is False
    embedder_loading.embedder.clear()  # a worker restarted
    second = _upload(knowledge_base, REPLACEMENT, document=first.document, filename="handbook.txt")
    thread, outcome = _in_own_thread(lambda: version_ingest(version_id=second.pk, worker="w1"))
    thread.join(1.0)
    assert thread.is_alive()  # waiting for the model: the live version answers meanwhile
    embedder_loading.embedder.set()
    thread.join(HANG_GUARD_S)
    assert outcome.get("value") is False, outcome
    second.refresh_from_db()
    assert second.status == DocumentStatus.READY


def test_embedding_later_hands_a_transient_failure_back_and_a_permanent_one_leaves_search(  # type: ignore[no-untyped-def]
    knowledge_base, settings, embedder_loading
) -> None:
    settings.GROUNDWORK_WORDS_FIRST_CHUNKS = 50
    version = _upload(knowledge_base, filename="handbook.txt")
    assert version_ingest(version_id=version.pk, worker="w1") is True
    embedder_loading.embedder.set()
    with (
        mock.patch.object(embedding_api, "embed_passages", side_effect=TransientEmbeddingError("rate limited")),
        pytest.raises(TransientEmbeddingError),
    ):
        version_embed(version_id=version.pk, worker="w1")
    version.refresh_from_db()
    assert version.status == DocumentStatus.EMBEDDING and version.claimed_by == EMBED_LATER  # for the retry
    assert any("glacier" in t for t in _found(knowledge_base, "glacier team skiing", "keyword"))

    with mock.patch.object(embedding_api, "embed_passages", side_effect=EmbeddingError("model refused the input")):
        version_embed(version_id=version.pk, worker="w1")
    version.refresh_from_db()
    assert version.status == DocumentStatus.FAILED and "model refused" in version.error_message
    assert _found(knowledge_base, "glacier team skiing", "keyword") == []
    _assert_equal_to_a_rebuild(knowledge_base.pk)


TEAMS = ("harbour", "orchard", "glacier")


def test_through_the_worker_every_upload_is_found_by_its_words_before_the_model_has_loaded(  # type: ignore[no-untyped-def]
    knowledge_base, settings, embedder_loading, celery_worker
) -> None:
    """Three uploads, two worker threads, the model still loading: none waits for another's vectors."""
    settings.GROUNDWORK_WORDS_FIRST_CHUNKS = 50
    versions = []
    try:
        for team in TEAMS:
            content = f"The {team} team keeps its minutes in the {team} ledger.".encode()
            versions.append(
                services.document_upload(
                    knowledge_base=knowledge_base,
                    upload=BytesIO(content),
                    filename=f"{team}.txt",
                    uploaded_by=None,
                ).version
            )
        # Before, two uploads held both threads waiting for the model and the third was not read.
        wait_for(
            lambda: all(any(team in t for t in _found(knowledge_base, f"{team} ledger", "keyword")) for team in TEAMS)
        )
        assert not DocumentVersion.objects.filter(pk__in=[v.pk for v in versions], status=DocumentStatus.READY).exists()
    finally:
        embedder_loading.embedder.set()  # the model has loaded (and no worker thread stays blocked)
    wait_for(
        lambda: (
            DocumentVersion.objects.filter(pk__in=[v.pk for v in versions], status=DocumentStatus.READY).count()
            == len(TEAMS)
        )
    )
    for team in TEAMS:
        assert any(team in t for t in _found(knowledge_base, f"{team} ledger", "vector"))
    _assert_equal_to_a_rebuild(knowledge_base.pk)
