"""Finding a website's pages: robots.txt, sitemaps (and sitemap indexes), links, and the bounds.

Everything that goes over the network goes through `kb.pipeline.fetch.fetch_url`, so every request
(robots.txt and sitemaps included) passes the same SSRF guard as a single web page.
"""

from __future__ import annotations

import hashlib
import html.parser
import re
import urllib.robotparser
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit
from xml.etree import ElementTree

from kb.pipeline.fetch import FetchRefused, fetch_url

ROBOTS_AGENT = "GroundworkBot"
SITEMAP_TYPES = {"application/xml": "xml", "text/xml": "xml"}
ROBOTS_TYPES = {"text/plain": "txt"}
MAX_SITEMAPS = 50  # files read per sync, sitemap indexes included
_SKIP_TEXT_TAGS = {"script", "style", "noscript", "template", "svg"}


@dataclass(frozen=True)
class Bounds:
    """Which URLs belong to a source: same scheme and host as the start, under `path_prefix`."""

    scheme: str
    netloc: str
    path_prefix: str

    @classmethod
    def of(cls, start_url: str, path_prefix: str) -> Bounds:
        parts = urlsplit(start_url)
        prefix = "/" + path_prefix.strip().lstrip("/") if path_prefix.strip() else "/"
        return cls(scheme=parts.scheme, netloc=parts.netloc.lower(), path_prefix=prefix)

    def contains(self, url: str) -> bool:
        parts = urlsplit(url)
        return (
            parts.scheme == self.scheme
            and parts.netloc.lower() == self.netloc
            and (parts.path or "/").startswith(self.path_prefix)
        )


def normalise(url: str, base: str | None = None) -> str | None:
    """An absolute http(s) URL without fragment (`base` resolves relative links), or None."""
    url = url.strip()
    if base is not None:
        url = urljoin(base, url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path or "/", parts.query, ""))


# --- robots.txt ------------------------------------------------------------------------------


class Robots:
    """robots.txt rules for our user agent (urllib.robotparser); `sitemaps` are its Sitemap: lines."""

    def __init__(self, parser: urllib.robotparser.RobotFileParser | None, disallow_all: bool = False) -> None:
        self._parser = parser
        self._disallow_all = disallow_all

    def allows(self, url: str) -> bool:
        if self._disallow_all:
            return False
        return self._parser is None or self._parser.can_fetch(ROBOTS_AGENT, url)

    @property
    def sitemaps(self) -> list[str]:
        return list(self._parser.site_maps() or []) if self._parser is not None else []


def robots_read(start_url: str) -> Robots:
    """The site's robots.txt. Missing (4xx): everything allowed. Unreachable or 5xx: nothing
    allowed (RFC 9309 §2.3.1.4: a server error means the rules are unknown, so stay out)."""
    parts = urlsplit(start_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
    try:
        page = fetch_url(url, content_types=ROBOTS_TYPES)
    except FetchRefused as exc:
        if exc.http_status is not None and 400 <= exc.http_status < 500:
            return Robots(None)
        if exc.code == "url_unsupported_type":  # an HTML error page where robots.txt should be
            return Robots(None)
        if exc.code in ("url_private", "url_invalid", "url_unresolvable"):
            raise
        return Robots(None, disallow_all=True)
    parser = urllib.robotparser.RobotFileParser(url)
    parser.parse(page.body.decode("utf-8", "replace").splitlines())
    return Robots(parser)


# --- sitemaps --------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def sitemap_parse(body: bytes) -> tuple[list[str], list[str]]:
    """(page URLs, child sitemap URLs) of a sitemap or sitemap index.

    A document type declaration is refused before parsing: a sitemap needs none, and without a DTD
    there are no entities to declare, so neither entity-expansion bombs nor external entities can
    reach the parser.
    """
    if re.search(rb"<!DOCTYPE|<!ENTITY", body, re.IGNORECASE):
        raise FetchRefused("sitemap_invalid", "The sitemap declares a DOCTYPE or entities; it was not read.")
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 -- no DTD can get here (checked above)
    except ElementTree.ParseError as exc:
        raise FetchRefused("sitemap_invalid", f"The sitemap is not valid XML ({exc}).") from None
    kind = _local(root.tag)
    urls: list[str] = []
    for entry in root:
        for child in entry:
            if _local(child.tag) == "loc" and child.text:
                urls.append(child.text.strip())
    if kind == "sitemapindex":
        return [], urls
    if kind == "urlset":
        return urls, []
    raise FetchRefused("sitemap_invalid", f"The file is not a sitemap (root element <{kind}>).")


def sitemap_urls(sitemap_url: str, *, robots: Robots, bounds: Bounds, limit: int) -> tuple[list[str], list[str]]:
    """Page URLs listed by a sitemap (following sitemap indexes), in bounds and allowed, at most
    `limit`; and the URLs in bounds that robots.txt keeps us out of."""
    pending, seen_maps, pages, seen_pages = [sitemap_url], set[str](), list[str](), set[str]()
    blocked: list[str] = []
    while pending and len(seen_maps) < MAX_SITEMAPS and len(pages) < limit:
        current = pending.pop(0)
        if current in seen_maps:
            continue
        seen_maps.add(current)
        page_urls, child_maps = sitemap_parse(fetch_url(current, content_types=SITEMAP_TYPES).body)
        pending.extend(u for u in (normalise(c) for c in child_maps) if u is not None)
        for raw in page_urls:
            url = normalise(raw)
            if url is None or url in seen_pages or not bounds.contains(url):
                continue
            seen_pages.add(url)
            if not robots.allows(url):
                blocked.append(url)
                continue
            pages.append(url)
            if len(pages) >= limit:
                break
    return pages, blocked


def sitemap_location(start_url: str, robots: Robots) -> str:
    """The sitemap to read: the URL itself when it names an XML file, else robots.txt's, else /sitemap.xml."""
    if urlsplit(start_url).path.lower().endswith(".xml"):
        return start_url
    parts = urlsplit(start_url)
    for candidate in robots.sitemaps:
        url = normalise(candidate)
        if url is not None and urlsplit(url).netloc.lower() == parts.netloc.lower():
            return url
    return urlunsplit((parts.scheme, parts.netloc, "/sitemap.xml", "", ""))


# --- HTML: links and text --------------------------------------------------------------------


class _HtmlReader(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TEXT_TAGS:
            self._skip += 1
        elif tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TEXT_TAGS and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def _read_html(body: bytes) -> _HtmlReader:
    reader = _HtmlReader()
    reader.feed(body.decode("utf-8", "replace"))
    reader.close()
    return reader


def html_links(body: bytes, base_url: str) -> Iterator[str]:
    """The absolute URLs of the page's `<a href>` links (fragments dropped)."""
    for href in _read_html(body).links:
        url = normalise(href, base_url)
        if url is not None:
            yield url


def text_fingerprint(body: bytes, extension: str) -> str:
    """A hash of the page's visible text, whitespace folded: markup, scripts or a changed
    tracking snippet do not count as a change of content, an edited sentence does."""
    text = " ".join(_read_html(body).text) if extension == "html" else body.decode("utf-8", "replace")
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()
