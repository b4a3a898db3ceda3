"""The chat widget in a real headless Chromium, embedded in a website served from another origin.

The app runs under uvicorn on http://127.0.0.1:<app port>; the "customer website" is a small
http.server on another port. http://127.0.0.1:<site port> is the allowed website;
http://localhost:<site port> is the same server under an origin the bot does not allow.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Organization
from chat.models import Chatbot, Citation, Conversation, Message, Role
from chat.services import chatbot_create
from chat.widget_services import widget_conversation_start
from kb.models import DocumentStatus, DocumentVersion
from kb.services import document_upload, knowledge_base_create
from tests.conftest import screenshot, wait_for

pytestmark = pytest.mark.browser

THEME = "#0f766e"
PAGE_1 = [
    "Shipping",
    "Orders placed before 14:00 leave our warehouse in Utrecht the same working day.",
    "Standard delivery inside the Netherlands takes one to two working days.",
    "International parcels are handed to the postal service and take three to seven days.",
]
PAGE_2 = [
    "Returns",
    "Unused items can be returned within 30 days of delivery for a full refund.",
    "Refunds are paid to the original payment method within 5 business days.",
    "Gift cards and opened camping fuel canisters cannot be returned.",
]

AGGRESSIVE_CSS = """
* { all: unset; }
head, script, style, title { display: none !important; }
div { display: none; }
iframe { width: 1px !important; height: 1px !important; opacity: .1 !important; }
button { display: inline !important; background: red !important; width: 3px !important; border-radius: 0 !important; }
svg, path { display: none !important; fill: lime !important; }
[class] { transform: rotate(3deg) scale(.5) !important; position: static !important; }
body { font: 30px/3 serif !important; color: #c00 !important; }
p { display: block; margin: 1em; }
"""

COMPARED_STYLES = [
    "display",
    "position",
    "margin-top",
    "padding-left",
    "font-family",
    "font-size",
    "line-height",
    "color",
    "background-color",
    "width",
    "box-sizing",
    "overflow",
    "transform",
]


def _pdf(pages: list[list[str]]) -> bytes:
    """A small text PDF (Helvetica, one line per entry), enough for the parser to find pages."""

    def text(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objects: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        stream = "BT /F1 11 Tf 16 TL 72 740 Td " + " ".join(f"({text(line)}) '" for line in lines) + " ET"
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream".encode())
        content_ref = len(objects)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {content_ref} 0 R >>".encode()
        )
        kids.append(f"{len(objects)} 0 R")
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode()
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Site:
    root: Path
    port: int

    @property
    def allowed(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def foreign(self) -> str:
        return f"http://localhost:{self.port}"

    def page(self, name: str, body: str, *, head: str = "") -> str:
        (self.root / name).write_text(
            f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{name}</title>{head}</head>'
            f"<body>{body}</body></html>"
        )
        return name


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("customer-site")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Site(root=root, port=server.server_address[1])
    server.shutdown()
    server.server_close()


def _snippet(app: str, bot: Chatbot) -> str:
    return f'<script src="{app}/static/widget/widget.js" data-bot="{bot.widget_key}" async></script>'


def _host_page(site: Site, name: str, app: str, bot: Chatbot, *, head: str = "") -> str:
    return site.page(
        name,
        '<header><h1 id="probe-title">Trailhead Outdoor</h1></header>'
        '<main><p id="probe">Tents, sleeping bags and everything for the trail.</p>'
        '<div id="probe-box">Free shipping over 50 euro.</div><a href="other.html">Other page</a></main>'
        + _snippet(app, bot),
        head=head,
    )


def _bot(org: Organization, site: Site, **settings: Any) -> Chatbot:
    settings.setdefault("allowed_origins", [site.allowed])
    return chatbot_create(
        organization=org,
        name="Trailhead",
        knowledge_bases=settings.pop("knowledge_bases", []),
        created_by=None,
        widget_title="Trailhead Help",
        theme_color=THEME,
        welcome_message="Hi! I answer questions about **orders**, shipping and returns.",
        suggested_questions=[
            "How long does delivery inside the Netherlands take?",
            "How many days do I have to return an item?",
        ],
        fallback_message="Sorry, I couldn't find that in our documents.",
        **settings,
    )


def _launcher(page: Any) -> Any:
    return page.locator("groundwork-chat button.l")


def _frame(page: Any) -> Any:
    return page.frame_locator("groundwork-chat iframe.f")


def _open_by_click(page: Any) -> dict[str, Any]:
    """Open the widget with a bare click (no hover warm-up); the loader's `groundwork:open` detail.

    The event fires once the chat frame is loaded, shown and focused. How long that takes is
    measured by bench/widget_open.py, not asserted here (a timing bound fails on a loaded machine).
    """
    page.evaluate(
        """() => { window.__gwOpen = new Promise(
            r => document.addEventListener("groundwork:open", e => r(e.detail), {once: true})); }"""
    )
    _launcher(page).dispatch_event("click")
    return dict(page.evaluate("() => window.__gwOpen"))


def _frame_handle(page: Any) -> Any:
    return page.locator("groundwork-chat iframe.f").element_handle().content_frame()


@pytest.mark.worker
def test_visitor_gets_a_streamed_cited_answer_and_the_conversation_follows_them(
    page: Any, asgi_server: str, site: Site, make_org: Any, celery_worker: Any
) -> None:
    org = make_org("Trailhead")
    kb = knowledge_base_create(
        organization=org, name="Customer service", created_by=None, chunk_size=300, chunk_overlap=0
    )
    upload = document_upload(
        knowledge_base=kb,
        upload=io.BytesIO(_pdf([PAGE_1, PAGE_2])),
        filename="policies.pdf",
        title="Store policies",
        uploaded_by=None,
    )
    wait_for(lambda: DocumentVersion.objects.get(pk=upload.version.pk).status == DocumentStatus.READY, timeout=120)
    bot = _bot(org, site, knowledge_bases=[kb], lead_capture=True)
    _host_page(site, "index.html", asgi_server, bot)
    _host_page(site, "other.html", asgi_server, bot)
    streams: list[Any] = []
    page.on("response", lambda r: streams.append(r) if r.url.endswith("/chat") else None)

    page.goto(f"{site.allowed}/index.html")
    launcher = _launcher(page)
    launcher.wait_for()
    assert launcher.get_attribute("aria-label") == "Open chat: Trailhead Help"
    assert launcher.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(15, 118, 110)"

    opened = _open_by_click(page)
    assert opened["bot"] == bot.widget_key
    # Shown and focused: the keyboard is in the chat right away.
    assert page.evaluate("() => document.querySelector('groundwork-chat').shadowRoot.activeElement.className") == "f"
    frame = _frame(page)
    frame.get_by_text("I answer questions about").wait_for()
    assert frame.locator(".welcome strong").inner_text() == "orders"  # Markdown, safely rendered
    assert frame.get_by_role("button", name="How long does delivery inside the Netherlands take?").is_visible()
    assert launcher.get_attribute("aria-expanded") == "true"
    screenshot(page, "widget-open-welcome")

    # Ask; the answer streams in and cites page 2 of the PDF.
    frame.get_by_label("Your question").fill("How many days do I have to return an item?")
    frame.get_by_label("Your question").press("Enter")
    answer = frame.locator(".gw-msg.bot:not(.welcome)").last
    chip = answer.locator(".gw-chip").first
    chip.wait_for(timeout=30_000)
    assert "30 days" in answer.locator(".gw-body").inner_text()
    assert chip.locator(".gw-chip-title").inner_text() == "Store policies"
    assert chip.locator(".gw-chip-page").inner_text() == "p. 2"
    sse = streams[-1].text()
    assert streams[-1].headers["content-type"].startswith("text/event-stream")
    assert sse.count("event: delta") > 1 and "event: final" in sse
    chip.hover()
    quote = answer.locator(".gw-quote").first
    quote.wait_for()
    assert "30 days" in quote.inner_text()
    screenshot(page, "widget-answer-with-citation")
    page.mouse.move(5, 5)

    # Thumbs down with a comment: stored on the message, where staff review it.
    answer.get_by_role("button", name="Not helpful").click()
    answer.get_by_label("What was wrong? (optional)").fill("It should mention the gift card exception.")
    answer.get_by_role("button", name="Send").click()
    answer.get_by_text("Thanks for telling us.").wait_for()
    conversation = Conversation.objects.get(chatbot=bot)
    assert conversation.channel == "widget" and conversation.origin == site.allowed
    rated = Message.objects.get(conversation=conversation, role=Role.ASSISTANT)
    assert rated.feedback == "down" and rated.feedback_comment == "It should mention the gift card exception."
    assert answer.get_by_role("button", name="Not helpful").get_attribute("aria-pressed") == "true"
    screenshot(page, "widget-feedback")

    # A network error: a clear message and a retry that works.
    page.route("**/api/widget/*/chat", lambda route: route.abort())
    frame.get_by_label("Your question").fill("How long does delivery inside the Netherlands take?")
    frame.get_by_role("button", name="Send").click()
    error = frame.locator(".gw-msg.error")
    error.get_by_text("Could not reach the assistant").wait_for()
    screenshot(page, "widget-network-error")
    page.unroute("**/api/widget/*/chat")
    error.get_by_role("button", name="Retry").click()
    frame.locator(".gw-msg.bot:not(.welcome)").nth(1).locator(".gw-chip").first.wait_for(timeout=30_000)
    assert "one to two working days" in frame.locator(".gw-msg.bot:not(.welcome)").nth(1).inner_text()

    # Another page of the same site: the conversation is restored from the iframe's storage.
    page.goto(f"{site.allowed}/other.html")
    launcher.hover()  # warm-up on intent, as a real visitor's pointer does
    launcher.click()
    frame.get_by_text("How many days do I have to return an item?").wait_for()
    restored = frame.locator(".gw-msg.bot:not(.welcome)")
    assert restored.count() == 2
    assert restored.first.locator(".gw-chip").count() >= 1
    assert restored.first.get_by_role("button", name="Not helpful").get_attribute("aria-pressed") == "true"
    assert Conversation.objects.filter(chatbot=bot).count() == 1

    # Asking for a person offers the lead form; the lead is stored on the conversation.
    frame.get_by_label("Your question").fill("Can I talk to a human about a broken tent?")
    frame.get_by_label("Your question").press("Enter")
    lead = frame.locator(".gw-lead")
    lead.wait_for(timeout=30_000)
    lead.get_by_label("E-mail").fill("walker@example.com")
    lead.get_by_label("Name (optional)").fill("Robin")
    screenshot(page, "widget-lead-form")
    lead.get_by_role("button", name="Send").click()
    frame.get_by_text("Thanks! We'll get back to you at walker@example.com.").wait_for()
    conversation.refresh_from_db()
    assert conversation.lead_email == "walker@example.com" and conversation.lead_name == "Robin"
    assert "broken tent" in conversation.lead_message

    # New conversation: back to the welcome, and the next question starts a new one.
    frame.get_by_role("button", name="Start a new conversation").click()
    assert frame.locator(".gw-msg").count() == 1
    frame.get_by_role("button", name="How long does delivery inside the Netherlands take?").click()
    frame.locator(".gw-msg.bot:not(.welcome) .gw-chip").first.wait_for(timeout=30_000)
    assert Conversation.objects.filter(chatbot=bot).count() == 2


def test_website_not_on_the_list_gets_a_clear_refusal_and_no_answers(
    page: Any, asgi_server: str, site: Site, make_org: Any
) -> None:
    bot = _bot(make_org("Trailhead"), site)
    _host_page(site, "foreign.html", asgi_server, bot)
    page.goto(f"{site.foreign}/foreign.html")
    _launcher(page).click()
    refusal = _frame(page).locator(".gw-refusal")
    refusal.wait_for()
    assert f"not enabled on {site.foreign}" in refusal.inner_text()
    assert _frame(page).locator("#gw-input").count() == 0
    screenshot(page, "widget-foreign-origin-refused")

    # The website calling the API itself: refused, and unreadable without CORS headers.
    outcome = page.evaluate(
        """async (url) => {
            try {
                const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"});
                return "status " + r.status;
            }
            catch (e) { return "blocked"; }
        }""",
        f"{asgi_server}/api/widget/{bot.widget_key}/conversations",
    )
    assert outcome == "blocked"
    # Framing the chat page while claiming to be the allowed website: the browser refuses (CSP).
    page.evaluate(
        """(src) => { const f = document.createElement("iframe"); f.id = "forged"; f.src = src;
                      document.body.appendChild(f); }""",
        f"{asgi_server}/widget/{bot.widget_key}/?origin={site.allowed}",
    )
    page.wait_for_timeout(1500)
    forged = page.locator("#forged").element_handle().content_frame()
    assert forged is None or forged.locator("#gw-input").count() == 0
    assert not Conversation.objects.filter(chatbot=bot).exists()


def test_hostile_page_css_does_not_break_the_widget_nor_does_the_widget_touch_the_page(
    page: Any, asgi_server: str, site: Site, make_org: Any
) -> None:
    bot = _bot(make_org("Trailhead"), site)  # no knowledge base: it answers with the fallback

    # 1. Loading and opening the widget changes nothing on a normal page.
    plain = site.page(
        "plain.html",
        '<h1 id="probe-title">Trailhead</h1><p id="probe">Tents and boots.</p><div id="probe-box">Box</div>'
        "<button id=probe-button>Buy</button>",
        head="<style>body { font-family: Georgia, serif; margin: 24px; } #probe-box { padding: 8px; }</style>",
    )
    page.goto(f"{site.allowed}/{plain}")
    styles_js = f"""() => {{
        const names = {json.dumps(COMPARED_STYLES)};
        const out = {{}};
        for (const el of [document.documentElement, document.body, ...document.querySelectorAll("[id^=probe]")]) {{
            const cs = getComputedStyle(el);
            out[el.id || el.tagName] = names.map(n => cs.getPropertyValue(n)).join("|");
        }}
        out.sheets = document.styleSheets.length;
        out.scroll = document.documentElement.scrollHeight;
        return out;
    }}"""
    before = page.evaluate(styles_js)
    page.evaluate(
        """([src, key]) => { const s = document.createElement("script"); s.src = src; s.async = true;
                             s.dataset.bot = key; document.body.appendChild(s); }""",
        [f"{asgi_server}/static/widget/widget.js", bot.widget_key],
    )
    _launcher(page).wait_for()
    _launcher(page).click()
    _frame(page).get_by_text("I answer questions about").wait_for()
    assert page.evaluate(styles_js) == before
    assert page.evaluate("() => Object.keys(window).filter(k => /groundwork|gw/i.test(k))") == []

    # 2. A page whose CSS attacks everything.
    _host_page(site, "hostile.html", asgi_server, bot, head=f"<style>{AGGRESSIVE_CSS}</style>")
    page.goto(f"{site.allowed}/hostile.html")
    launcher = _launcher(page)
    launcher.wait_for()
    box = launcher.bounding_box()
    assert box is not None and round(box["width"]) == 56 and round(box["height"]) == 56
    assert box["x"] + box["width"] == pytest.approx(1280 - 20, abs=1)
    assert box["y"] + box["height"] == pytest.approx(900 - 20, abs=1)
    assert launcher.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(15, 118, 110)"

    # Keyboard only: focus the launcher, open with Enter, type, send, close with Escape.
    launcher.focus()
    page.keyboard.press("Enter")
    frame = _frame(page)
    frame.get_by_text("I answer questions about").wait_for()
    iframe_box = page.locator("groundwork-chat iframe.f").bounding_box()
    assert iframe_box is not None and round(iframe_box["width"]) == 380 and iframe_box["height"] > 500
    wait_for(lambda: frame.locator("#gw-input").evaluate("el => document.activeElement === el"), timeout=5)
    page.keyboard.type("Who won the 1998 world cup?")
    page.keyboard.press("Enter")
    frame.get_by_text("Sorry, I couldn't find that in our documents.").wait_for()
    screenshot(page, "widget-hostile-css")
    page.keyboard.press("Escape")
    wait_for(lambda: launcher.get_attribute("aria-expanded") == "false", timeout=5)
    assert launcher.evaluate("b => b.getRootNode().activeElement === b")


def test_narrow_screen_shows_the_chat_full_screen(browser: Any, asgi_server: str, site: Site, make_org: Any) -> None:
    bot = _bot(make_org("Trailhead"), site, allowed_origins=[site.allowed], lead_capture=True)
    _host_page(site, "mobile.html", asgi_server, bot)
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{site.allowed}/mobile.html")
        screenshot(page, "widget-mobile-closed")
        _launcher(page).tap()
        frame = _frame(page)
        frame.get_by_text("I answer questions about").wait_for()
        page.wait_for_timeout(250)  # the open transition
        box = page.locator("groundwork-chat iframe.f").bounding_box()
        assert box == {"x": 0, "y": 0, "width": 375, "height": 740}
        assert not _launcher(page).is_visible()
        frame.get_by_role("button", name="How long does delivery inside the Netherlands take?").tap()
        frame.locator(".gw-lead").wait_for()  # refused (no documents) and lead capture is on
        screenshot(page, "widget-mobile-open")
        frame.get_by_role("button", name="Close chat").tap()
        _launcher(page).wait_for()
    finally:
        context.close()


def test_answers_and_sources_cannot_inject_html(page: Any, asgi_server: str, site: Site, make_org: Any) -> None:
    """Model output and document quotes are untrusted: only the tiny Markdown subset becomes markup."""
    bot = _bot(make_org("Trailhead"), site)
    started = widget_conversation_start(chatbot=bot, origin=site.allowed)
    conversation = started.conversation
    Message.objects.create(conversation=conversation, role=Role.USER, content="<b>hi</b>")
    evil = Message.objects.create(
        conversation=conversation,
        role=Role.ASSISTANT,
        content=(
            'Returns take **30 days** [1].<img src=x onerror="parent.__xss=1">\n\n'
            "- see [our policy](https://example.com/returns)\n"
            "- or [click](javascript:parent.__xss=2) and <script>parent.__xss=3</script>\n\n"
            "*Thanks*"
        ),
    )
    Citation.objects.create(
        message=evil,
        number=1,
        document_title='<img src=x onerror="parent.__xss=4">Policy',
        page=3,
        quote="<script>parent.__xss=5</script>Returns within 30 days.",
        source_url="javascript:parent.__xss=6",
    )
    _host_page(site, "xss.html", asgi_server, bot)
    page.goto(f"{site.allowed}/xss.html")
    _launcher(page).click()
    _frame(page).get_by_text("I answer questions about").wait_for()
    # Hand the visitor token to the iframe, as if this visitor had started the conversation.
    _frame_handle(page).evaluate(
        "([key, value]) => localStorage.setItem(key, value)",
        [f"groundwork:{bot.widget_key}", json.dumps({"id": conversation.pk, "token": started.visitor_token})],
    )
    page.reload()
    _launcher(page).click()
    frame = _frame(page)
    answer = frame.locator(".gw-msg.bot:not(.welcome)")
    answer.locator(".gw-chip").wait_for()
    assert frame.locator(".gw-msg.user").inner_text() == "<b>hi</b>"
    assert answer.locator("img, script, b").count() == 0
    assert answer.locator("strong").inner_text() == "30 days" and answer.locator("em").inner_text() == "Thanks"
    links = answer.locator(".gw-body a")
    assert links.count() == 1
    assert links.get_attribute("href") == "https://example.com/returns"
    assert set((links.get_attribute("rel") or "").split()) >= {"noopener", "noreferrer"}
    assert "or click and <script>parent.__xss=3</script>" in answer.inner_text()  # the label, as text
    assert answer.locator(".gw-chip-title").inner_text() == '<img src=x onerror="parent.__xss=4">Policy'
    assert answer.locator(".gw-quote-link").count() == 0  # javascript: source URL dropped
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__xss") is None
    assert _frame_handle(page).evaluate("() => window.__xss") is None
    screenshot(page, "widget-untrusted-content")


def test_visitor_opens_the_cited_page_with_the_quote_highlighted_where_the_bot_allows_it(
    page: Any, asgi_server: str, site: Site, make_org: Any
) -> None:
    from kb.pipeline.run import version_ingest

    org = make_org("Trailhead")
    kb = knowledge_base_create(organization=org, name="Customer service", created_by=None)
    upload = document_upload(
        knowledge_base=kb,
        upload=io.BytesIO(_pdf([PAGE_1, PAGE_2])),
        filename="policies.pdf",
        title="Store policies",
        uploaded_by=None,
        enqueue=False,
    )
    version_ingest(version_id=upload.version.pk)
    bot = _bot(org, site, knowledge_bases=[kb], widget_source_links=True)
    _host_page(site, "index.html", asgi_server, bot)

    page.goto(f"{site.allowed}/index.html")
    _launcher(page).wait_for()
    _open_by_click(page)
    frame = _frame(page)
    frame.get_by_label("Your question").fill("How many days do I have to return an item?")
    frame.get_by_label("Your question").press("Enter")
    answer = frame.locator(".gw-msg.bot:not(.welcome)").last
    chip = answer.locator(".gw-chip").first
    chip.wait_for(timeout=30_000)
    chip.click()
    link = answer.get_by_role("link", name="Open source at the quote")
    assert link.get_attribute("href").startswith(f"{asgi_server}/widget/{bot.widget_key}/source/")
    with (
        page.context.expect_page() as opened,
        page.context.expect_event("response", lambda r: "/page.png" in r.url) as image_response,
    ):
        link.click()
    source = opened.value
    source.wait_for_load_state("load")
    image = image_response.value
    assert image.status == 200 and image.headers["content-type"] == "image/png"
    assert int(image.headers["x-highlight-boxes"]) >= 1
    assert "Quoted on page 2" in source.locator("#source-view").inner_text()
    screenshot(source, "widget-source-highlight")
