"""Match ranking (kb.match_ranking): hybrid search re-orders its fused top 30 by how the query's
words occur in each chunk (close together, in the question's order, in the headings) with weights
fitted by bench/match_ranking.py. Its effect on real questions is pinned in tests/test_evaluation.py.
"""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import Role
from chat.models import Channel, Message
from chat.rag.answer import chat_answer
from chat.rag.retrieve import retrieve
from chat.services import chatbot_create
from kb.match_ranking import QueryTerms, pool_terms, read_terms, term_features
from kb.models import Chunk
from kb.pipeline.run import version_ingest
from kb.selectors import chunk_search
from kb.services import document_create_text, knowledge_base_create, knowledge_base_update

QUERY = QueryTerms(lexemes=["incub", "period", "coronavirus"], idf={"incub": 3.0, "period": 1.0, "coronavirus": 2.0})


def test_the_words_of_the_question_close_together_and_in_order_count_more_than_scattered() -> None:
    together = {"incub": [(10, "A")], "period": [(11, "A")], "coronavirus": [(13, "A")]}
    scattered = {"incub": [(10, "A")], "period": [(80, "A")], "coronavirus": [(150, "A")]}
    close, apart = term_features(QUERY, together), term_features(QUERY, scattered)
    assert close["cover"] == apart["cover"] == 1.0  # the same words ...
    assert close["window"] == 1.0 and apart["window"] == 0.5  # ... but only the rarest alone in a window
    assert close["pairs"] == 1.0 and apart["pairs"] == 0.0
    reversed_order = {"incub": [(13, "A")], "period": [(12, "A")], "coronavirus": [(10, "A")]}
    assert term_features(QUERY, reversed_order)["pairs"] == 0.0


def test_words_in_the_title_or_section_path_count_as_heading_not_as_text() -> None:
    in_title = {"coronavirus": [(1, "C")], "period": [(4, "B")], "incub": [(9, "A")]}
    features = term_features(QUERY, in_title)
    assert features["heading"] == pytest.approx(0.5)  # coronavirus (2) + period (1) of 6
    assert features["cover"] == pytest.approx(0.5)  # incub (3) of 6


def test_a_word_every_candidate_holds_weighs_less_among_them() -> None:
    pool = [{"coronavirus": [(1, "A")], "incub": [(2, "A")]}, {"coronavirus": [(5, "A")]}, {"coronavirus": [(7, "A")]}]
    local = pool_terms(QUERY, pool)
    assert local.idf["coronavirus"] < local.idf["incub"]


def _ingest(kb, title: str, text: str) -> None:  # type: ignore[no-untyped-def]
    version_ingest(
        version_id=document_create_text(
            knowledge_base=kb, title=title, text=text, created_by=None, enqueue=False
        ).version.pk
    )


@pytest.mark.django_db
def test_hybrid_search_its_trace_and_the_playground_show_the_match_ranking(make_org, make_user, client) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    kb = knowledge_base_create(organization=org, name="Outbreaks", created_by=None)
    _ingest(kb, "Incubation", "The incubation period of the coronavirus is five days on average.")
    _ingest(
        kb, "Periods", "A period of rest helps. Coronavirus cases rose. Incubation units were bought in that period."
    )
    _ingest(kb, "Masks", "Masks reduce the spread of respiratory viruses in crowded rooms.")
    query = "What is the incubation period of the coronavirus?"

    hits = chunk_search(knowledge_bases=[kb], query=query, limit=5)
    assert all(h.match_score is not None and h.fused_score is not None for h in hits)
    assert [h.match_score for h in hits] == sorted((h.match_score or 0.0 for h in hits), reverse=True)
    assert hits[0].chunk is not None and hits[0].chunk.document.title == "Incubation"
    # A question of stop words and punctuation only has no words to match: the fused order, no error.
    only_stop_words = chunk_search(knowledge_bases=[kb], query="what is the ?!", limit=5)
    assert only_stop_words and all(h.match_score is None for h in only_stop_words)
    # Keyword or vector search alone is not re-ordered.
    assert all(h.match_score is None for h in chunk_search(knowledge_bases=[kb], query=query, mode="keyword"))

    bot = chatbot_create(organization=org, name="Outbreak bot", knowledge_bases=[kb], created_by=None)
    trace = retrieve(chatbot=bot, question=query).trace
    assert trace["ranking"] == "match"
    assert all(c["match_score"] is not None for c in trace["candidates"])

    client.force_login(make_user(organization=org, role=Role.VIEWER))
    page = client.post(f"/chatbots/{bot.pk}/playground/retrieval/", {"message": query}).content.decode()
    assert "Match ranking: the best 30" in page and f"{hits[0].match_score:.3f}" in page

    # A reviewer reads both scores in the conversation's retrieval trace.
    chat_answer(chatbot=bot, question=query, channel=Channel.API)
    stored = Message.objects.get(conversation__chatbot=bot, role="assistant")
    first = stored.retrieval_trace["candidates"][0]
    review = client.get(f"/conversations/{stored.conversation_id}/").content.decode()
    assert "(match ranking)" in review
    assert f"<td>{first['fused_score']}</td><td>{first['score']}</td>" in review


@pytest.mark.django_db
def test_knowledge_bases_in_two_languages_keep_the_fused_order(make_org) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    english = knowledge_base_create(organization=org, name="English", created_by=None)
    german = knowledge_base_create(organization=org, name="German", created_by=None)
    knowledge_base_update(knowledge_base=german, changes={"language": "de"})
    _ingest(english, "Returns", "Returns are accepted within 30 days of delivery.")
    _ingest(german, "Rückgabe", "Rücksendungen werden innerhalb von 30 Tagen angenommen.")

    hits = chunk_search(knowledge_bases=[english, german], query="returns within 30 days", limit=5)
    assert hits and all(h.match_score is None for h in hits)


@pytest.mark.django_db
def test_the_word_matches_read_are_exactly_the_stored_ones(make_org) -> None:  # type: ignore[no-untyped-def]
    """Where the query's words occur in each candidate (positions and weights: text, section path,
    title), as read for ranking, equal the chunk's whole stored search vector restricted to them."""
    kb = knowledge_base_create(organization=make_org(), name="Outbreaks", created_by=None)
    _ingest(
        kb,
        "Coronavirus incubation",
        "# Incubation period\n\nThe incubation period of the coronavirus is five days. "
        "After the incubation period, symptoms of the coronavirus start.",
    )
    _ingest(kb, "Masks", "Masks reduce the spread of respiratory viruses in crowded rooms.")
    ids = list(Chunk.objects.filter(knowledge_base=kb).values_list("pk", flat=True))
    query = "What is the incubation period of the coronavirus?"

    read = read_terms(query, [kb.pk], "english", ids)

    assert read is not None
    terms, lengths, occurrences = read
    assert terms.lexemes == ["incub", "period", "coronavirus"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.id, length(c.search_vector), u.lexeme, u.positions, u.weights"
            " FROM kb_chunk c, unnest(c.search_vector) u WHERE c.id = ANY(%s)",
            [ids],
        )
        stored = cursor.fetchall()
    expected: dict[int, dict[str, list[tuple[int, str]]]] = {}
    for chunk_id, length, lexeme, positions, weights in stored:
        assert lengths[chunk_id] == length
        if lexeme in terms.lexemes:
            expected.setdefault(chunk_id, {})[lexeme] = list(zip(positions, weights, strict=True))
    assert occurrences == expected
    # The question's words in the text, in the section path and in the title alike.
    found = next(iter(expected.values()))
    assert {w for positions in found.values() for _, w in positions} >= {"A", "B", "C"}
    assert len(expected) == 1 and len(lengths) == len(ids)  # the masks chunk: a length, no match
    assert read_terms("what is the ?!", [kb.pk], "english", ids) is None


@pytest.mark.django_db(transaction=True)
def test_the_match_ranking_statement_is_prepared_once_and_planned_once(make_org) -> None:  # type: ignore[no-untyped-def]
    """Sent on every hybrid search, so it is prepared once per connection and keeps its generic
    plan in a search's transaction (planning was a third of its time); the ranking is the one the
    statement gives when sent plain (GROUNDWORK_DB_PREPARED_STATEMENTS=false)."""
    kb = knowledge_base_create(organization=make_org(), name="Outbreaks", created_by=None)
    _ingest(kb, "Incubation", "The incubation period of the coronavirus is five days on average.")
    _ingest(kb, "Periods", "A period of rest helps. Coronavirus cases rose. Incubation units were bought.")
    _ingest(kb, "Masks", "Masks reduce the spread of respiratory viruses in crowded rooms.")
    query = "What is the incubation period of the coronavirus?"

    def ranking() -> list[tuple[int, float | None]]:
        return [(h.chunk_id, h.match_score) for h in chunk_search(knowledge_bases=[kb], query=query, limit=5)]

    def plans() -> tuple[int, int]:
        """Generic and custom plans of match ranking's prepared statement on this connection so far
        (earlier tests on this pooled connection may have run it too)."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
                ["%query_lexemes%"],
            )
            rows = cursor.fetchall()
        assert len(rows) <= 1, "prepared more than once"
        return rows[0] if rows else (0, 0)

    connection.ensure_connection()
    threshold = connection.connection.prepare_threshold
    assert threshold is not None  # prepared statements are on by default
    connection.connection.prepare_threshold = None  # as Django leaves it: nothing is prepared
    try:
        before = plans()
        sent_plain = ranking()
        assert plans() == before
    finally:
        connection.connection.prepare_threshold = threshold
    prepared = [ranking() for _ in range(7)]

    assert sent_plain and all(r == sent_plain for r in prepared)
    generic, custom = plans()
    assert (generic - before[0], custom - before[1]) == (7, 0)
