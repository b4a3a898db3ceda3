"""Precise ranking (kb.precise_ranking): a knowledge base opts in through the API or the page, its
chunks get e5 ranking vectors from the real worker in the background, and search weighs their
similarity into the match ranking of its fused top 30, keeping match ranking alone whenever a
candidate still lacks its vector."""

from __future__ import annotations

import threading
from io import BytesIO
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from accounts.models import Role
from chat.models import Chatbot
from chat.rag.retrieve import retrieve
from kb import embedding as embedding_api
from kb.models import Chunk, KnowledgeBase
from kb.pipeline import ranking, run
from kb.selectors import chunk_search
from kb.services import document_upload, knowledge_base_create
from tests.conftest import wait_for

TEXTS = {
    "Battery": "The battery of the X200 lasts about ten hours of video playback on a single charge.",
    "Charging": "Charging the X200 battery from empty to full takes two hours with the supplied adapter.",
    "Warranty": "The X200 comes with a two year warranty covering the battery and the screen.",
    "Screen": "The screen of the X200 is a 13 inch panel with a resolution of 2560 by 1600 pixels.",
    "Returns": "Devices such as the X200 can be returned within thirty days if unused.",
}


def _kb_with_texts(client: Any) -> int:
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Devices"}, format="json").json()["id"]
    for title, text in TEXTS.items():
        response = client.post(f"/api/v1/knowledge-bases/{kb_id}/texts/", {"title": title, "text": text}, format="json")
        assert response.status_code == 201, response.content
    wait_for(lambda: Chunk.objects.filter(knowledge_base_id=kb_id, is_live=True).count() == len(TEXTS), timeout=90)
    return int(kb_id)


def _vectors(client: Any, kb_id: int) -> Any:
    return client.get(f"/api/v1/knowledge-bases/{kb_id}/").json()["ranking_vectors"]


@pytest.mark.worker
def test_turning_precise_ranking_on_fills_vectors_and_reranks_search(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id = _kb_with_texts(client)
    kb = KnowledgeBase.objects.get(pk=kb_id)
    query = "How long does the battery last?"
    fused = chunk_search(knowledge_bases=[kb], query=query, limit=5)
    assert fused and all(h.ranking_score is None for h in fused)
    assert _vectors(client, kb_id) is None  # off

    response = client.patch(f"/api/v1/knowledge-bases/{kb_id}/", {"precise_ranking": True}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["precise_ranking"] is True
    done = wait_for(lambda: (v := _vectors(client, kb_id)) and v["ready"] == v["total"] == len(TEXTS) and v, timeout=90)
    assert done == {"ready": len(TEXTS), "total": len(TEXTS)}

    kb.refresh_from_db()
    precise = chunk_search(knowledge_bases=[kb], query=query, limit=5)
    assert all(h.ranking_score is not None and h.fused_score is not None for h in precise)
    assert {h.chunk_id for h in precise} == {h.chunk_id for h in fused}
    # The mixed score orders the list; the passage that answers is first, with e5's top similarity.
    assert [h.score for h in precise] == sorted((h.score for h in precise), reverse=True)
    assert precise[0].chunk is not None and precise[0].chunk.document.title == "Battery"
    assert precise[0].ranking_score == max(h.ranking_score or 0.0 for h in precise)

    # A document added later gets its vector after it goes live (its own background task).
    client.post(
        f"/api/v1/knowledge-bases/{kb_id}/texts/", {"title": "Weight", "text": "The X200 weighs 1.2 kg."}, format="json"
    )
    wait_for(lambda: _vectors(client, kb_id) == {"ready": len(TEXTS) + 1, "total": len(TEXTS) + 1}, timeout=90)

    # Turned off: match ranking again, with no e5 scores.
    assert (
        client.patch(f"/api/v1/knowledge-bases/{kb_id}/", {"precise_ranking": False}, format="json").status_code == 200
    )
    kb.refresh_from_db()
    assert all(h.ranking_score is None for h in chunk_search(knowledge_bases=[kb], query=query, limit=5))


@pytest.mark.worker
def test_a_candidate_without_its_vector_keeps_the_order_without_precise_ranking(  # type: ignore[no-untyped-def]
    make_org, api_client_for, celery_worker
) -> None:
    org = make_org()
    client = api_client_for(org)
    kb_id = _kb_with_texts(client)
    kb = KnowledgeBase.objects.get(pk=kb_id)
    before = chunk_search(knowledge_bases=[kb], query="battery charge hours", limit=5)
    client.patch(f"/api/v1/knowledge-bases/{kb_id}/", {"precise_ranking": True}, format="json")
    wait_for(lambda: _vectors(client, kb_id)["ready"] == len(TEXTS), timeout=90)
    kb.refresh_from_db()
    # One chunk still waiting for its vector (as while the fill catches up after an upload).
    Chunk.objects.filter(pk=before[-1].chunk_id).update(ranking_embedding=None)
    assert _vectors(client, kb_id) == {"ready": len(TEXTS) - 1, "total": len(TEXTS)}

    waiting = chunk_search(knowledge_bases=[kb], query="battery charge hours", limit=5)
    assert [h.chunk_id for h in waiting] == [h.chunk_id for h in before]
    assert all(h.ranking_score is None and h.match_score is not None for h in waiting)
    bot = Chatbot.objects.create(organization=org, name="Devices bot")
    bot.knowledge_bases.add(kb)
    # Meanwhile the candidates are ordered as without precise ranking: by their word matches.
    assert retrieve(chatbot=bot, question="battery charge hours").trace["ranking"] == "match"

    Chunk.objects.filter(pk=before[-1].chunk_id).update(ranking_embedding=[0.05] * 384)
    trace = retrieve(chatbot=bot, question="battery charge hours").trace
    assert trace["ranking"] == "precise"
    assert all(c["precise_score"] is not None and c["fused_score"] is not None for c in trace["candidates"])


@pytest.mark.django_db
def test_precise_ranking_is_refused_for_an_e5_knowledge_base_and_scoped_to_the_organisation(
    make_org, api_client_for
) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org("Owner"))
    e5_kb = client.post(
        "/api/v1/knowledge-bases/", {"name": "Multilingual", "embedding_model": "local/e5"}, format="json"
    ).json()
    response = client.patch(f"/api/v1/knowledge-bases/{e5_kb['id']}/", {"precise_ranking": True}, format="json")
    assert response.status_code == 400
    assert "adds nothing to a knowledge base that searches with e5" in response.content.decode()
    assert KnowledgeBase.objects.get(pk=e5_kb["id"]).precise_ranking is False

    # The other way round: a knowledge base with precise ranking cannot switch to e5 either, and
    # nothing of the request is applied.
    kb = client.post("/api/v1/knowledge-bases/", {"name": "English"}, format="json").json()
    KnowledgeBase.objects.filter(pk=kb["id"]).update(precise_ranking=True)
    response = client.patch(
        f"/api/v1/knowledge-bases/{kb['id']}/", {"name": "Renamed", "embedding_model": "local/e5"}, format="json"
    )
    assert response.status_code == 400
    assert "Turn precise ranking off" in response.content.decode()
    unchanged = KnowledgeBase.objects.get(pk=kb["id"])
    assert (unchanged.name, unchanged.embedding_model, unchanged.reembed_model) == ("English", "local/minilm", "")
    switched = client.patch(
        f"/api/v1/knowledge-bases/{kb['id']}/", {"precise_ranking": False, "embedding_model": "local/e5"}, format="json"
    )
    assert switched.status_code == 202, switched.content  # accepted: re-embedding in the background
    assert KnowledgeBase.objects.get(pk=kb["id"]).reembed_model == "local/e5"

    stranger = api_client_for(make_org("Stranger"))
    response = stranger.patch(f"/api/v1/knowledge-bases/{kb['id']}/", {"precise_ranking": True}, format="json")
    assert response.status_code == 404
    assert KnowledgeBase.objects.get(pk=kb["id"]).precise_ranking is False


@pytest.mark.django_db
def test_the_page_turns_precise_ranking_on_for_editors_of_the_organisation_only(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    from kb.services import knowledge_base_create

    org, other = make_org("Owner"), make_org("Other")
    kb = knowledge_base_create(organization=org, name="Manuals", created_by=None)
    editor, viewer, outsider = make_user(org), make_user(org, role=Role.VIEWER), make_user(other)
    url = f"/knowledge-bases/{kb.pk}/precise-ranking/"

    browser = Client()
    browser.force_login(editor)
    page = browser.get(f"/knowledge-bases/{kb.pk}/").content.decode()
    assert 'id="precise-ranking-form"' in page
    assert browser.post(url, {"precise_ranking": "on"}).status_code == 302
    kb.refresh_from_db()
    assert kb.precise_ranking is True
    assert "passages are ranked precisely" in browser.get(f"/knowledge-bases/{kb.pk}/").content.decode()

    for user, expected in ((viewer, 403), (outsider, 404)):
        client = Client()
        client.force_login(user)
        assert client.post(url, {}).status_code == expected
    kb.refresh_from_db()
    assert kb.precise_ranking is True


def _ingested_kb(make_org: Any, names: list[str]) -> KnowledgeBase:
    """A precise-ranking knowledge base whose chunks have no ranking vectors yet (ingested here,
    without the worker, so no fill is queued)."""
    kb = knowledge_base_create(organization=make_org(), name="Devices", created_by=None)
    for name in names:
        _ingest_text(kb, name)
    KnowledgeBase.objects.filter(pk=kb.pk).update(precise_ranking=True)
    return kb


def _ingest_text(kb: KnowledgeBase, name: str) -> None:
    uploaded = document_upload(
        knowledge_base=kb,
        upload=BytesIO(TEXTS[name].encode()),
        filename=f"{name.lower()}.txt",
        uploaded_by=None,
        enqueue=False,
    )
    run.version_ingest(version_id=uploaded.version.pk)


def _missing(kb: KnowledgeBase) -> int:
    return Chunk.objects.filter(knowledge_base=kb, ranking_embedding__isnull=True).count()


@pytest.mark.django_db(transaction=True)
def test_two_fills_at_once_embed_each_chunk_once(make_org, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every finished document queues a fill; two running at once on two pool processes both
    started from the lowest missing chunk and embedded the same batches with e5."""
    kb = _ingested_kb(make_org, ["Battery", "Charging", "Warranty", "Screen"])
    total = _missing(kb)
    embedded_texts: list[str] = []
    real_embed = embedding_api.embed_passages

    def counting_embed(texts: list[str], *, model: str) -> Any:
        embedded_texts.extend(texts)
        return real_embed(texts, model=model)

    monkeypatch.setattr(embedding_api, "embed_passages", counting_embed)
    start = threading.Barrier(2)
    counts: list[int] = []

    def fill() -> None:
        start.wait()
        try:
            counts.append(ranking.fill_ranking_vectors(knowledge_base_id=kb.pk))
        finally:
            connection.close()

    fills = [threading.Thread(target=fill) for _ in range(2)]
    for thread in fills:
        thread.start()
    for thread in fills:
        thread.join()
    assert total == 4
    assert sorted(counts) == [0, total] and len(embedded_texts) == total
    assert _missing(kb) == 0


@pytest.mark.django_db(transaction=True)
def test_chunks_written_while_a_fill_finishes_get_their_vectors(make_org, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A document that goes live just as the running fill ends: its own fill finds the lock taken
    and leaves, so the running one must look again after letting go."""
    kb = _ingested_kb(make_org, ["Battery", "Charging"])
    real_fill = ranking._fill
    late_fill_counts: list[int] = []

    def fill_then_a_document_arrives(knowledge_base_id: int) -> int:
        embedded = real_fill(knowledge_base_id)
        if not late_fill_counts:  # the first pass only: its last look found nothing missing
            _ingest_text(kb, "Returns")

            def late_fill() -> None:
                try:
                    late_fill_counts.append(ranking.fill_ranking_vectors(knowledge_base_id=kb.pk))
                finally:
                    connection.close()

            thread = threading.Thread(target=late_fill)
            thread.start()
            thread.join()
        return embedded

    monkeypatch.setattr(ranking, "_fill", fill_then_a_document_arrives)
    assert ranking.fill_ranking_vectors(knowledge_base_id=kb.pk) == 3
    assert late_fill_counts == [0]  # it left: the lock was held
    assert _missing(kb) == 0
