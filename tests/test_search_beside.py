"""Hybrid search sends its vector query on a second connection beside the keyword query
(kb.search_beside): same answers as in turn, the same snapshot, sent the moment the query vector
exists, and in turn when no connection or slot is free."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest
from django.db import connection

from kb import search_beside
from kb.embedding import QueryVectors, embed_query
from kb.exceptions import EmbeddingError
from kb.models import Chunk, KnowledgeBase
from kb.selectors import SearchHit, chunk_search
from tests.test_document_lifecycle import _ready, _upload

HANDBOOK = {
    "returns.md": b"# Returns\n\nUnworn boots can be returned within 30 days with the receipt.\n",
    "repairs.md": b"# Repairs\n\nTents with torn seams are repaired free of charge for two years.\n",
    "shipping.md": b"# Shipping\n\nParcels leave the warehouse within two business days.\n",
}
QUESTIONS = ("can I return boots", "my tent seam is torn", "when does my parcel ship")


@pytest.fixture(autouse=True)
def _beside_for_any_size(settings: Any) -> None:
    # These knowledge bases are small: searched in turn by default (see the last test).
    settings.GROUNDWORK_SEARCH_BESIDE_MIN_CHUNKS = 0


def _knowledge_base(make_org: Any, api_client_for: Any) -> KnowledgeBase:
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Handbook"}, format="json").json()["id"]
    for doc in [_upload(client, kb_id, name, body) for name, body in HANDBOOK.items()]:
        _ready(client, doc["id"], 1)
    return KnowledgeBase.objects.get(pk=kb_id)


def _ranked(hits: list[SearchHit]) -> list[tuple[int, float | None, float | None]]:
    return [(h.chunk_id, h.vector_score, h.keyword_score) for h in hits]


def _in_turn(kb: KnowledgeBase, question: str, settings: Any) -> list[SearchHit]:
    settings.GROUNDWORK_SEARCH_BESIDE_THREADS = 0
    try:
        return chunk_search(knowledge_bases=[kb], query=question, limit=3, mode="hybrid")
    finally:
        settings.GROUNDWORK_SEARCH_BESIDE_THREADS = 4


def _recording_sends(monkeypatch: Any) -> list[tuple[int, str, str]]:
    """(backend pid, statement, thread name) of every statement sent beside a search."""
    sent: list[tuple[int, str, str]] = []
    send = search_beside.Beside.send

    def recording(self: search_beside.Beside, query: str, params: Any = None) -> Any:
        sent.append((self.backend_pid, " ".join(str(query).split()), threading.current_thread().name))
        return send(self, query, params)

    monkeypatch.setattr(search_beside.Beside, "send", recording)
    return sent


def _own_backend() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


@pytest.mark.worker
def test_the_vector_query_runs_beside_the_keyword_query_and_finds_the_same(
    make_org, api_client_for, celery_worker, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    kb = _knowledge_base(make_org, api_client_for)
    sent = _recording_sends(monkeypatch)
    for question in QUESTIONS:
        beside = chunk_search(knowledge_bases=[kb], query=question, limit=3, mode="hybrid")
        assert beside, question
        assert _ranked(beside) == _ranked(_in_turn(kb, question, settings)), question
    vector_queries = [(pid, query) for pid, query, _ in sent if "<=>" in query]
    assert len(vector_queries) == len(QUESTIONS)
    assert _own_backend() not in {pid for pid, _ in vector_queries}


@pytest.mark.worker
def test_the_vector_query_is_sent_the_moment_the_query_vector_exists(
    make_org, api_client_for, celery_worker, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    # The question is still being embedded when the search starts: the vector query leaves from
    # the thread that finishes the embedding, not after the keyword query.
    kb = _knowledge_base(make_org, api_client_for)
    question = QUESTIONS[2]
    expected = _ranked(_in_turn(kb, question, settings))
    vector = embed_query(question, model=kb.embedding_model)
    pending: Future[list[float]] = Future()
    query_vectors = QueryVectors(question, [])
    query_vectors._futures[kb.embedding_model] = pending
    finisher = threading.Timer(0.3, lambda: pending.set_result(vector))
    finisher.name = "embedding-finisher"
    sent = _recording_sends(monkeypatch)
    finisher.start()
    found = chunk_search(knowledge_bases=[kb], query=question, limit=3, mode="hybrid", query_vectors=query_vectors)
    assert _ranked(found) == expected
    assert [thread for _, query, thread in sent if "<=>" in query] == ["embedding-finisher"]


@pytest.mark.worker
def test_an_embedding_failure_reaches_the_caller_and_frees_the_connection(
    make_org, api_client_for, celery_worker, settings
) -> None:  # type: ignore[no-untyped-def]
    kb = _knowledge_base(make_org, api_client_for)
    failed: Future[list[float]] = Future()
    failed.set_exception(EmbeddingError("The embedding service is down."))
    for _ in range(settings.GROUNDWORK_SEARCH_BESIDE_THREADS + 1):  # more failures than slots
        query_vectors = QueryVectors(QUESTIONS[0], [])
        query_vectors._futures[kb.embedding_model] = failed
        with pytest.raises(EmbeddingError, match="service is down"):
            chunk_search(knowledge_bases=[kb], query=QUESTIONS[0], limit=3, mode="hybrid", query_vectors=query_vectors)
    assert _ranked(chunk_search(knowledge_bases=[kb], query=QUESTIONS[0], limit=3, mode="hybrid")) == _ranked(
        _in_turn(kb, QUESTIONS[0], settings)
    )


@pytest.mark.worker
def test_the_second_connection_reads_the_same_snapshot_as_the_first(
    make_org, api_client_for, celery_worker, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    # A change committed between the keyword query's snapshot and the vector query must not be
    # seen by either: here every chunk stops being live in between.
    kb = _knowledge_base(make_org, api_client_for)
    before = _ranked(_in_turn(kb, QUESTIONS[0], settings))
    real_connect = search_beside.connect

    def change_then_connect(snapshot: str) -> Any:
        def retire() -> None:
            Chunk.objects.filter(knowledge_base=kb).update(is_live=False)
            connection.close()

        other = threading.Thread(target=retire)  # its own connection, committed at once
        other.start()
        other.join()
        return real_connect(snapshot)

    monkeypatch.setattr(search_beside, "connect", change_then_connect)
    sent = _recording_sends(monkeypatch)
    during = chunk_search(knowledge_bases=[kb], query=QUESTIONS[0], limit=3, mode="hybrid")
    assert _ranked(during) == before
    assert any("<=>" in query for _, query, _ in sent)
    assert not Chunk.objects.filter(knowledge_base=kb, is_live=True).exists()


@pytest.mark.worker
def test_with_no_slot_free_the_queries_run_in_turn(
    make_org, api_client_for, celery_worker, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    kb = _knowledge_base(make_org, api_client_for)
    expected = _ranked(_in_turn(kb, QUESTIONS[1], settings))
    held = 0
    while search_beside._slots.acquire(blocking=False):  # every slot busy with other searches
        held += 1
    try:
        assert held == settings.GROUNDWORK_SEARCH_BESIDE_THREADS
        assert search_beside.connect("00000003-00000002-1") is None
        sent = _recording_sends(monkeypatch)
        assert _ranked(chunk_search(knowledge_bases=[kb], query=QUESTIONS[1], limit=3, mode="hybrid")) == expected
        assert sent == []
    finally:
        for _ in range(held):
            search_beside._slots.release()


@pytest.mark.django_db(transaction=True)
def test_a_statement_failing_beside_raises_to_the_caller_and_frees_its_connection(settings) -> None:  # type: ignore[no-untyped-def]
    from django.db import transaction

    with transaction.atomic():
        snapshot = search_beside.repeatable_read(export=True)
        assert snapshot is not None
        for _ in range(settings.GROUNDWORK_SEARCH_BESIDE_THREADS + 1):  # more failures than slots
            beside = search_beside.connect(snapshot)
            assert beside is not None, "a failed statement kept its slot"
            cursor = beside.send("SELECT 1 / 0")
            with pytest.raises(Exception, match="division by zero"):
                cursor.fetchall()
            beside.failed()
            beside.close()
        beside = search_beside.connect(snapshot)
        assert beside is not None
        level = beside.send("SELECT current_setting('transaction_isolation')")
        assert level.fetchone()[0] == "repeatable read"
        beside.close()


@pytest.mark.worker
def test_a_keyword_statement_failing_while_the_vector_query_runs_beside_frees_both(
    make_org, api_client_for, celery_worker, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    from kb import keyword_search

    kb = _knowledge_base(make_org, api_client_for)
    expected = _ranked(_in_turn(kb, QUESTIONS[0], settings))
    sent = _recording_sends(monkeypatch)
    with monkeypatch.context() as broken:
        broken.setattr(keyword_search, "_KEYWORD_SQL", "SELECT 1 / (%(limit)s - %(limit)s), 1.0")
        for _ in range(settings.GROUNDWORK_SEARCH_BESIDE_THREADS + 1):  # more failures than slots
            with pytest.raises(Exception, match="division by zero"):
                chunk_search(knowledge_bases=[kb], query=QUESTIONS[0], limit=3, mode="hybrid")
    assert any("<=>" in query for _, query, _ in sent), "the failing searches never sent a vector query beside"
    free = 0
    while search_beside._slots.acquire(blocking=False):
        free += 1
    for _ in range(free):
        search_beside._slots.release()
    assert free == settings.GROUNDWORK_SEARCH_BESIDE_THREADS, "a failed search kept its slot"
    assert _ranked(chunk_search(knowledge_bases=[kb], query=QUESTIONS[0], limit=3, mode="hybrid")) == expected


@pytest.mark.worker
def test_a_small_knowledge_base_searches_in_turn_and_finds_the_same(
    make_org, api_client_for, celery_worker, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    # Its vector query is short: a second connection would cost more than it overlaps.
    kb = _knowledge_base(make_org, api_client_for)
    sent = _recording_sends(monkeypatch)
    beside = chunk_search(knowledge_bases=[kb], query=QUESTIONS[0], limit=3, mode="hybrid")
    assert any("<=>" in query for _, query, _ in sent)
    sent.clear()
    settings.GROUNDWORK_SEARCH_BESIDE_MIN_CHUNKS = kb.live_chunks
    exported: list[bool] = []
    real_repeatable_read = search_beside.repeatable_read

    def recording_repeatable_read(*, export: bool) -> str | None:
        exported.append(export)
        return real_repeatable_read(export=export)

    monkeypatch.setattr(search_beside, "repeatable_read", recording_repeatable_read)
    in_turn = chunk_search(knowledge_bases=[kb], query=QUESTIONS[0], limit=3, mode="hybrid")
    assert sent == [] and exported == [False]  # not even a snapshot to share
    assert _ranked(in_turn) == _ranked(beside)
