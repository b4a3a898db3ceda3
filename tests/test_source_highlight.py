"""Click-through to the cited source: the original at the cited page with the quote highlighted.

Staff open it from any citation (org-scoped); widget visitors only where the bot allows it, by a
signed link scoped to one bot, one citation and its document version, that expires.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape
from PIL import Image
from rest_framework.test import APIClient

from accounts.models import Role
from chat.models import Chatbot, Citation
from chat.rag.answer import chat_answer
from chat.services import chatbot_create, chatbot_update
from chat.source_links import SOURCE_LINK_MAX_AGE, source_link_token
from kb.highlight import quote_span
from kb.models import DocumentStatus, DocumentVersion, KnowledgeBase
from kb.pipeline.run import version_ingest
from kb.services import document_create_text, document_upload, knowledge_base_create
from tests.conftest import read_streaming
from tests.pdf_factory import simple_pdf

SITE = "https://shop.example"
RETURNS = "Returns are accepted within 30 days of delivery for a full refund."
PDF = simple_pdf(
    [
        ["Terms of sale", "These terms apply to every order placed in our online shop."],
        ["Returns and refunds", RETURNS, "Refunds are paid to the original payment method."],
    ]
)
SHIPPING = (
    "Standard delivery takes 2 to 4 business days within the EU. "
    "Express delivery costs 12.50 EUR and arrives the next business day."
)


def _pdf_kb(org: Any, user: Any = None) -> KnowledgeBase:
    kb = knowledge_base_create(organization=org, name="Terms", created_by=user)
    result = document_upload(
        knowledge_base=kb,
        upload=SimpleUploadedFile("terms.pdf", PDF),
        filename="terms.pdf",
        uploaded_by=user,
        enqueue=False,
    )
    version_ingest(version_id=result.version.pk)
    assert DocumentVersion.objects.get(pk=result.version.pk).status == DocumentStatus.READY
    return kb


def _text_kb(org: Any) -> KnowledgeBase:
    kb = knowledge_base_create(organization=org, name="Shipping", created_by=None)
    result = document_create_text(knowledge_base=kb, title="Shipping", text=SHIPPING, created_by=None, enqueue=False)
    version_ingest(version_id=result.version.pk)
    return kb


def _cited(bot: Chatbot, question: str) -> Citation:
    message = chat_answer(chatbot=bot, question=question, channel="playground")["message"]
    assert message["citations"], message
    return Citation.objects.get(pk=message["citations"][0]["id"])


def _viewer_opening(org: Any, make_user: Any, kb: KnowledgeBase, question: str) -> tuple[Client, Citation]:
    """A viewer's logged-in client and the citation of a bot over `kb` answering `question`."""
    viewer = make_user(org, role=Role.VIEWER)
    bot = chatbot_create(organization=org, name="Bot", knowledge_bases=[kb], created_by=None)
    citation = _cited(bot, question)
    client = Client()
    client.force_login(viewer)
    return client, citation


def _highlighted_pixels(png: bytes) -> int:
    data = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    pixels = zip(data[0::3], data[1::3], data[2::3], strict=True)
    return sum(1 for r, g, b in pixels if r > 200 and 150 < g < 240 and b < 120)


def test_quote_span_ignores_line_breaks_hyphens_and_case() -> None:
    text = "Intro.\nReturns are ACCEPTED with-\nin 30 days of delivery. Outro."
    start, end = quote_span(text, "Returns are accepted within 30 days of delivery.") or (0, 0)
    assert text[start:end] == "Returns are ACCEPTED with-\nin 30 days of delivery."
    assert quote_span(text, "Nothing like this sentence at all") is None


@pytest.mark.django_db(transaction=True)
def test_staff_open_a_pdf_citation_as_the_page_image_with_the_quote_boxed(make_org: Any, make_user: Any) -> None:
    org = make_org("Shop")
    client, citation = _viewer_opening(org, make_user, _pdf_kb(org), "Within how many days are returns accepted?")
    page = client.get(citation.source_path)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="source-page-image"' in html and "page.png" in html
    assert "Quoted on page 2" in html  # the page holding the quote, though its chunk starts on page 1
    image_url = html.split('id="source-page-image" src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")

    image = client.get(image_url)
    assert image.status_code == 200
    assert image["Content-Type"] == "image/png" and image.content.startswith(b"\x89PNG")
    assert image["Content-Security-Policy"] == "sandbox" and image["X-Content-Type-Options"] == "nosniff"
    assert int(image["X-Highlight-Boxes"]) >= 1
    assert _highlighted_pixels(image.content) > 500  # the yellow boxes are really painted

    # The same page without a quote has no highlight.
    plain = client.get(image_url.split("&quote=")[0])
    assert plain["X-Highlight-Boxes"] == "0" and _highlighted_pixels(plain.content) == 0


@pytest.mark.django_db(transaction=True)
def test_staff_open_a_text_citation_with_the_quote_marked(make_org: Any, make_user: Any) -> None:
    org = make_org("Shop")
    client, citation = _viewer_opening(org, make_user, _text_kb(org), "How much does express delivery cost?")
    html = client.get(citation.source_path).content.decode()
    marked = html.split('<mark class="quote-mark" id="quote">', 1)[1].split("</mark>", 1)[0]
    assert marked == citation.quote  # the quoted sentence itself, full stop included
    assert "12.50 EUR" in marked
    assert "js/source.js" in html and "<script>" not in html  # scrolled into view by static JS only

    # The staff transcript links each citation to the same highlighted place.
    transcript = client.get(f"/conversations/{citation.message.conversation_id}/").content.decode()
    assert f'href="{escape(citation.source_path)}"' in transcript


@pytest.mark.django_db(transaction=True)
def test_another_organisation_cannot_open_the_source_or_its_page_image(make_org: Any, make_user: Any) -> None:
    org = make_org("Shop")
    bot = chatbot_create(organization=org, name="Bot", knowledge_bases=[_pdf_kb(org)], created_by=None)
    citation = _cited(bot, "Within how many days are returns accepted?")
    outsider = make_user(make_org("Other"), role=Role.ADMIN)
    client = Client()
    client.force_login(outsider)
    assert client.get(citation.source_path).status_code == 404
    assert client.get(f"/documents/{citation.document_id}/source/page.png?page=2").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_bad_source_parameters_are_not_server_errors(make_org: Any, make_user: Any) -> None:
    org = make_org("Shop")
    kb = _pdf_kb(org)
    doc = kb.documents.get()
    client = Client()
    client.force_login(make_user(org, role=Role.VIEWER))
    base = f"/documents/{doc.pk}/source/"
    assert client.get(base + "?page=abc&version=x&chunk=-1").status_code == 200
    assert client.get(base + "page.png?page=99").status_code == 404
    assert client.get(base + "page.png?page=99999999999999999999").status_code == 200  # ignored: page 1
    assert client.get(base + "?version=999999").status_code == 404
    text_doc = _text_kb(org).documents.get()
    assert client.get(f"/documents/{text_doc.pk}/source/page.png?page=1").status_code == 404


# --- widget visitors -------------------------------------------------------------------------------


def _widget_answer(bot: Chatbot, question: str) -> dict[str, Any]:
    client = APIClient()
    started = client.post(
        f"/api/widget/{bot.widget_key}/conversations",
        {"visitor_id": "visitor-0001"},
        format="json",
        HTTP_ORIGIN=SITE,
    ).json()
    response = client.post(
        f"/api/widget/{bot.widget_key}/chat",
        {"message": question, "conversation_id": started["conversation_id"], "visitor_token": started["visitor_token"]},
        format="json",
        HTTP_ORIGIN=SITE,
    )
    raw = read_streaming(response).decode()
    return json.loads(raw.split("event: final\ndata: ", 1)[1].split("\n", 1)[0])["message"]


@pytest.mark.django_db(transaction=True)
def test_widget_visitors_open_sources_only_where_the_bot_allows_it(make_org: Any) -> None:
    org = make_org("Shop")
    kb = _pdf_kb(org)
    bot = chatbot_create(organization=org, name="Bot", knowledge_bases=[kb], created_by=None, allowed_origins=[SITE])
    question = "Within how many days are returns accepted?"
    visitor = Client()

    # Off by default: no link, and a link made anyway is refused.
    message = _widget_answer(bot, question)
    assert message["citations"] and message["citations"][0]["source"] == ""
    citation = Citation.objects.filter(message_id=message["id"]).get()
    assert citation.version_id is not None
    token = source_link_token(chatbot=bot, citation_id=citation.pk, version_id=citation.version_id)
    assert visitor.get(f"/widget/{bot.widget_key}/source/{token}/").status_code == 403
    assert visitor.get(f"/widget/{bot.widget_key}/source/{token}/page.png").status_code == 403

    # On: the answer carries a signed link that opens the page image with the quote boxed.
    chatbot_update(chatbot=bot, widget_source_links=True)
    message = _widget_answer(bot, question)
    link = message["citations"][0]["source"]
    assert link.startswith(f"/widget/{bot.widget_key}/source/")
    page = visitor.get(link)
    assert page.status_code == 200
    assert "default-src 'none'" in page["Content-Security-Policy"]
    image = visitor.get(link + "page.png?page=2")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert int(image["X-Highlight-Boxes"]) >= 1
    # Only the cited page: a visitor cannot page through the document.
    assert image.content == visitor.get(link + "page.png?page=1").content

    # Another bot's key with this bot's link, or a tampered link: nothing.
    other = chatbot_create(
        organization=make_org("Other"), name="Other", knowledge_bases=[], created_by=None, widget_source_links=True
    )
    suffix = link.split("/source/", 1)[1]
    assert visitor.get(f"/widget/{other.widget_key}/source/{suffix}").status_code == 404
    assert visitor.get(link.replace(":", ":x", 1)).status_code == 404
    # A link signed for another version of the document: nothing.
    forged = source_link_token(chatbot=bot, citation_id=citation.pk, version_id=citation.version_id + 1000)
    assert visitor.get(f"/widget/{bot.widget_key}/source/{forged}/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_widget_source_links_expire(make_org: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    org = make_org("Shop")
    bot = chatbot_create(
        organization=org, name="Bot", knowledge_bases=[_text_kb(org)], created_by=None, widget_source_links=True
    )
    citation = _cited(bot, "How much does express delivery cost?")
    assert citation.version_id is not None
    fresh = source_link_token(chatbot=bot, citation_id=citation.pk, version_id=citation.version_id)
    past = int(time.time()) - SOURCE_LINK_MAX_AGE - 60
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(past))
    expired = source_link_token(chatbot=bot, citation_id=citation.pk, version_id=citation.version_id)
    monkeypatch.undo()
    visitor = Client()
    opened = visitor.get(f"/widget/{bot.widget_key}/source/{fresh}/")
    assert opened.status_code == 200
    assert "12.50 EUR" in opened.content.decode().split('<mark class="quote-mark" id="quote">', 1)[1]
    response = visitor.get(f"/widget/{bot.widget_key}/source/{expired}/")
    assert response.status_code == 410
    assert "expired" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_document_and_source_pages_read_chunk_text_without_the_vectors(make_org: Any, make_user: Any) -> None:
    # A chunk row holds up to three vectors and a tsvector, several times its text: pages that
    # show chunks must not load them (a 500-chunk document's page took 58 ms with them, 12 without).
    org = make_org("Shop")
    client, citation = _viewer_opening(org, make_user, _text_kb(org), "How much does express delivery cost?")
    with CaptureQueriesContext(connection) as queries:
        document_page = client.get(f"/documents/{citation.document_id}/").content.decode()
        source_page = client.get(citation.source_path).content.decode()
    assert "12.50 EUR" in document_page and '<mark class="quote-mark" id="quote">' in source_page
    chunk_reads = [q["sql"] for q in queries.captured_queries if 'FROM "kb_chunk"' in q["sql"]]
    assert chunk_reads, "the pages read the chunks"
    for column in ("embedding", "next_embedding", "ranking_embedding", "search_vector"):
        assert not [sql for sql in chunk_reads if f'"kb_chunk"."{column}"' in sql], column
