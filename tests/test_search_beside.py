"""Hybrid search runs its vector query on a second connection beside the keyword query
(kb.search_beside): same answers as in turn, the same snapshot, and in turn when no connection
or slot is free."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from kb import search_beside
from kb.models import Chunk, KnowledgeBase
from kb.selectors import SearchHit, chunk_search
from tests.test_document_lifecycle import _ready, _upload

HANDBOOK = {
    "returns.md": b"# Returns\n\nUnworn boots can be returned within 30 days with the receipt.\n",
    "repairs.md": b"# Repairs\n\nTents with torn seams are repaired free of charge for two years.\n",
    "shipping.md": b"# Shipping\n\nParcels leave the warehouse within two business days.\n",
}
QUESTIONS = ("can I return boots", "my tent seam is torn", "when does my parcel ship")


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


@pytest.mark.worker
def test_the_vector_query_runs_beside_the_keyword_query_and_finds_the_same(
    make_org, api_client_for, celery_worker, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    kb = _knowledge_base(make_org, api_client_for)
    backends: list[int] = []
    start = search_beside.start

    def recording(snapshot: str, run: Any) -> Any:
        def on_cursor(cursor: Any, begin: str) -> Any:
            cursor.execute("SELECT pg_backend_pid()")
            backends.append(cursor.fetchone()[0])
            return run(cursor, begin)

        return start(snapshot, on_cursor)

    monkeypatch.setattr(search_beside, "start", recording)
    for question in QUESTIONS:
        beside = chunk_search(knowledge_bases=[kb], query=question, limit=3, mode="hybrid")
        assert beside, question
        assert _ranked(beside) == _ranked(_in_turn(kb, question, settings)), question
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own = cursor.fetchone()[0]
    assert len(backends) == len(QUESTIONS) and own not in backends


@pytest.mark.worker
def test_the_second_connection_reads_the_same_snapshot_as_the_first(
    make_org, api_client_for, celery_worker, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    # A change committed between the keyword query's snapshot and the vector query must not be
    # seen by either: here every chunk stops being live in between.
    kb = _knowledge_base(make_org, api_client_for)
    before = _ranked(_in_turn(kb, QUESTIONS[0], settings))
    start = search_beside.start

    def change_then_start(snapshot: str, run: Any) -> Any:
        def retire() -> None:
            Chunk.objects.filter(knowledge_base=kb).update(is_live=False)
            connection.close()

        other = threading.Thread(target=retire)  # its own connection, committed at once
        other.start()
        other.join()
        return start(snapshot, run)

    monkeypatch.setattr(search_beside, "start", change_then_start)
    during = chunk_search(knowledge_bases=[kb], query=QUESTIONS[0], limit=3, mode="hybrid")
    assert _ranked(during) == before
    assert not Chunk.objects.filter(knowledge_base=kb, is_live=True).exists()


@pytest.mark.worker
def test_with_no_slot_free_the_queries_run_in_turn(make_org, api_client_for, celery_worker, settings) -> None:  # type: ignore[no-untyped-def]
    kb = _knowledge_base(make_org, api_client_for)
    expected = _ranked(_in_turn(kb, QUESTIONS[1], settings))
    held = 0
    while search_beside._slots.acquire(blocking=False):  # every slot busy with other searches
        held += 1
    try:
        assert held == settings.GROUNDWORK_SEARCH_BESIDE_THREADS
        assert search_beside.start("00000003-00000002-1", lambda cursor, begin: None) is None
        assert _ranked(chunk_search(knowledge_bases=[kb], query=QUESTIONS[1], limit=3, mode="hybrid")) == expected
    finally:
        for _ in range(held):
            search_beside._slots.release()


@pytest.mark.django_db(transaction=True)
def test_a_query_failing_beside_raises_to_the_caller_and_frees_its_connection(settings) -> None:  # type: ignore[no-untyped-def]
    from django.db import transaction

    def failing(cursor: Any, begin: str) -> Any:
        cursor.execute(begin + "SELECT 1 / 0")
        return cursor.fetchall()

    def snapshot_level(cursor: Any, begin: str) -> Any:
        cursor.execute(begin + "SELECT current_setting('transaction_isolation')")
        while cursor.nextset():
            pass
        return cursor.fetchone()[0]

    with transaction.atomic():
        snapshot = search_beside.repeatable_read(export=True)
        assert snapshot is not None
        for _ in range(settings.GROUNDWORK_SEARCH_BESIDE_THREADS + 1):  # more failures than slots
            future = search_beside.start(snapshot, failing)
            assert future is not None, "a failed query kept its slot"
            with pytest.raises(Exception, match="division by zero"):
                future.result(timeout=10)
        future = search_beside.start(snapshot, snapshot_level)
        assert future is not None
        assert future.result(timeout=10) == "repeatable read"
