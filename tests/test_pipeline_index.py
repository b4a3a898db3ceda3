"""Index (kb.pipeline.index): keyword-search vectors and BM25 statistics that follow every change of what is live."""

from __future__ import annotations

import pytest

from kb import services
from kb.models import Document, KnowledgeBase
from tests.conftest import wait_for
from tests.test_document_lifecycle import V1, V2, _ready, _texts, _upload


def _recounted_stats(kb_id: int) -> tuple[int, int, dict[str, int]]:
    """BM25 statistics counted from scratch over the live chunks."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(length(search_vector)), 0) FROM kb_chunk "
            "WHERE knowledge_base_id = %s AND is_live",
            [kb_id],
        )
        n, total = cursor.fetchone()
        cursor.execute(
            "SELECT lexeme, count(*) FROM kb_chunk c, unnest(tsvector_to_array(c.search_vector)) lexeme "
            "WHERE c.knowledge_base_id = %s AND c.is_live GROUP BY lexeme",
            [kb_id],
        )
        return n, total, dict(cursor.fetchall())


def _kept_stats(kb_id: int) -> tuple[int, int, dict[str, int]]:
    from kb.models import TermStat

    kb = KnowledgeBase.objects.get(pk=kb_id)
    df = dict(TermStat.objects.filter(knowledge_base=kb, chunks__gt=0).values_list("lexeme", "chunks"))
    return kb.live_chunks, kb.live_lexemes, df


@pytest.mark.worker
def test_keyword_statistics_follow_every_change_of_what_is_live(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    # BM25's collection size and document frequencies are kept, not counted per query: after
    # upload, replacement, disabling, enabling, re-indexing and deletion they must equal a recount.
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Loyalty"}, format="json").json()["id"]
    other = _upload(client, kb_id, "travel.md", b"# Travel\n\nTrain tickets are refunded within 14 days.\n")
    doc = _upload(client, kb_id, "loyalty.md", V1)
    _ready(client, other["id"], 1)
    _ready(client, doc["id"], 1)
    assert _kept_stats(kb_id) == _recounted_stats(kb_id) and _kept_stats(kb_id)[0] == 2
    assert _kept_stats(kb_id)[2]["expir"] == 1

    _upload(client, kb_id, "loyalty.md", V2)
    _ready(client, doc["id"], 2)
    assert _kept_stats(kb_id) == _recounted_stats(kb_id)
    assert "expir" in _kept_stats(kb_id)[2] and "inact" not in _kept_stats(kb_id)[2]  # V1's word left with it

    document = Document.objects.get(pk=doc["id"])
    services.document_set_enabled(document=document, enabled=False)
    services.document_set_enabled(document=document, enabled=False)  # twice: counted once
    assert _kept_stats(kb_id) == _recounted_stats(kb_id) and _kept_stats(kb_id)[0] == 1
    services.document_set_enabled(document=document, enabled=True)
    assert _kept_stats(kb_id) == _recounted_stats(kb_id) and _kept_stats(kb_id)[0] == 2

    assert document.live_version is not None
    services.version_requeue(version=document.live_version)  # the re-index button
    wait_for(lambda: _recounted_stats(kb_id)[0] == 2 and _ready(client, doc["id"], 2), timeout=90)
    assert _kept_stats(kb_id) == _recounted_stats(kb_id)

    assert client.delete(f"/api/v1/documents/{doc['id']}/").status_code == 204
    assert _kept_stats(kb_id) == _recounted_stats(kb_id) and _kept_stats(kb_id)[0] == 1
    assert any("refunded" in t for t in _texts(client, kb_id, "are train tickets refunded"))

    # The repair command recounts lost statistics, and names a knowledge base that does not exist.
    from django.core.management import CommandError, call_command

    from kb.models import TermStat

    TermStat.objects.filter(knowledge_base_id=kb_id).delete()
    KnowledgeBase.objects.filter(pk=kb_id).update(live_chunks=0, live_lexemes=0)
    call_command("kb_rebuild_term_stats", "--kb", str(kb_id))
    assert _kept_stats(kb_id) == _recounted_stats(kb_id) and _kept_stats(kb_id)[0] == 1
    with pytest.raises(CommandError, match="No knowledge base with id 987654"):
        call_command("kb_rebuild_term_stats", "--kb", "987654")


@pytest.mark.worker
def test_keyword_search_matches_the_document_title(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    # People name the document they mean; its title words are indexed with every chunk.
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Policies"}, format="json").json()["id"]
    policy = _upload(client, kb_id, "Expense_policy-2024.md", b"# Trains\n\nTickets are refunded within 14 days.\n")
    other = _upload(client, kb_id, "canteen.md", b"# Lunch\n\nSoup is served until 14:00 on weekdays.\n")
    _ready(client, policy["id"], 1)
    _ready(client, other["id"], 1)
    response = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/search/", {"query": "expense policy", "mode": "keyword"}, format="json"
    )
    assert [r["document_id"] for r in response.json()["results"]] == [policy["id"]]
