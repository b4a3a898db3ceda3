"""A small website served on loopback for the website-source tests: 30 help pages, a sitemap
index, robots.txt keeping crawlers out of /private/, ETags for conditional requests."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PAGES = 30


def help_path(n: int) -> str:
    return f"/help/page-{n:02d}"


class LocalSite:
    def __init__(self, pages: int = PAGES) -> None:
        self.base = ""
        self.texts: dict[str, str] = {
            help_path(n): f"Help topic {n}. Parcel option {n} costs {n + 3} euros and arrives in {n % 5 + 1} days."
            for n in range(1, pages + 1)
        }
        self.etags = True  # False: a server without conditional requests
        self.script = "1"  # markup that is not visible text (a tracking snippet, say)
        self.requests: Counter[str] = Counter()
        self.not_modified: Counter[str] = Counter()
        self.lock = threading.Lock()

    # what the server answers
    def page_html(self, path: str) -> str | None:
        if path == "/":
            links = [help_path(1), "/private/secret", "/blog/news", "http://example.invalid/elsewhere"]
            body = "<h1>Northwind</h1><p>Welcome to the Northwind help centre.</p>"
            title = "Northwind"
        elif path in ("/private/secret", "/blog/news"):
            links, body, title = ["/"], f"<p>{path} content that must stay out.</p>", path
        elif path in self.texts:
            n = int(path.rsplit("-", 1)[1])
            links = ["/", help_path(n + 1), f"{help_path(n)}#top"]
            body, title = f"<h1>Help {n}</h1><p>{self.texts[path]}</p>", f"Help {n} | Northwind"
        else:
            return None
        anchors = "".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
        script = f"<script>var build = {self.script};</script>"
        return f"<html><head><title>{title}</title>{script}</head><body>{body}<ul>{anchors}</ul></body></html>"

    def sitemap(self, path: str) -> str | None:
        ns = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
        if path == "/sitemap.xml":
            maps = "".join(f"<sitemap><loc>{self.base}/sitemap-{p}.xml</loc></sitemap>" for p in ("a", "b"))
            return f'<?xml version="1.0" encoding="UTF-8"?><sitemapindex {ns}>{maps}</sitemapindex>'
        paths = sorted(self.texts)
        middle = len(paths) // 2
        half = {"/sitemap-a.xml": [*paths[:middle], "/private/secret"], "/sitemap-b.xml": paths[middle:]}
        if path not in half:
            return None
        urls = "".join(f"<url><loc>{self.base}{p}</loc></url>" for p in half[path])
        return f'<?xml version="1.0" encoding="UTF-8"?><urlset {ns}>{urls}</urlset>'

    def respond(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = handler.path
        with self.lock:
            self.requests[path] += 1
        if path == "/robots.txt":
            body, content_type = (
                f"User-agent: *\nDisallow: /private/\n\nSitemap: {self.base}/sitemap.xml\n",
                "text/plain",
            )
        elif path.endswith(".xml"):
            body, content_type = self.sitemap(path), "application/xml"  # type: ignore[assignment]
        else:
            body, content_type = self.page_html(path), "text/html; charset=utf-8"  # type: ignore[assignment]
        if body is None:
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = body.encode()
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if self.etags and handler.headers.get("If-None-Match") == etag:
            with self.lock:
                self.not_modified[path] += 1
            handler.send_response(304)
            handler.send_header("ETag", etag)
            handler.end_headers()
            return
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        if self.etags:
            handler.send_header("ETag", etag)
        handler.end_headers()
        handler.wfile.write(data)


@contextmanager
def serve_site(pages: int = PAGES) -> Iterator[LocalSite]:
    site = LocalSite(pages)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            site.respond(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
