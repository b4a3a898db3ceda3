"""Fetch (web pages only): download the page a URL document points at, safely, as the version's file.

Server-side request forgery is the risk: a URL typed by a user must not make the server read its
own network (cloud metadata endpoints, the database, an intranet admin page). Every hop of a
redirect chain is resolved and each address must be public; the connection then goes to the
address that was checked (host name kept for `Host` and TLS SNI/certificate checks), so a DNS
answer that changes between check and connect (rebinding) cannot redirect it. Size, time and
content type are bounded.
"""

from __future__ import annotations

import functools
import hashlib
import html
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.files.base import ContentFile

from kb.exceptions import ParseFailure
from kb.models import Document, SourceType, WebPage
from kb.pipeline.job import Job
from kb.storage import safe_storage_name

ALLOWED_CONTENT_TYPES = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "txt",
    "text/markdown": "md",
    "text/csv": "csv",
    "application/pdf": "pdf",
}
MAX_REDIRECTS = 5
USER_AGENT = "GroundworkBot/1.0 (+knowledge base import)"


@dataclass(frozen=True)
class FetchedPage:
    url: str  # after redirects
    content_type: str
    extension: str
    body: bytes
    etag: str = ""
    last_modified: str = ""
    not_modified: bool = False  # a conditional request answered 304: `body` is empty


class FetchRefused(ParseFailure):
    """The URL may not or cannot be fetched; the message says why."""

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(code, message)
        self.http_status = http_status


_NAT64_PREFIXES = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    NAT64 (64:ff9b::a.b.c.d), 6to4 or Teredo. The kernel, a NAT64 gateway or a tunnel may deliver
    a connection to any of them at that IPv4 address, so it has to pass the same check."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = int(ip)
    if packed >> 32 == 0 and packed > 1:  # ::a.b.c.d (deprecated, still routed by some stacks)
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if any(ip in prefix for prefix in _NAT64_PREFIXES):
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def address_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `ip` — and any IPv4 address embedded in it — is a public unicast address."""
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return address_is_public(embedded)
    return True


def _public_address(host: str, port: int) -> str:
    """The first address of `host`, after checking that every address it resolves to is public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise FetchRefused("url_unresolvable", f"The address “{host}” could not be found (DNS).") from None
    addresses = [str(info[4][0]) for info in infos]
    if not settings.GROUNDWORK_FETCH_ALLOW_PRIVATE:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not address_is_public(ip):
                raise FetchRefused(
                    "url_private",
                    f"“{host}” points into a private or local network ({ip}); only public web pages can be "
                    "imported. (An administrator can allow intranet addresses with GROUNDWORK_FETCH_ALLOW_PRIVATE.)",
                )
    return addresses[0]


def validate_url(url: str) -> str:
    """A cleaned http(s) URL, or FetchRefused with the reason (no request is made)."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused("url_invalid", "Enter a full web address starting with http:// or https://.")
    if parts.username or parts.password:
        raise FetchRefused("url_invalid", "Web addresses with a user name or password cannot be imported.")
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def check_url_allowed(url: str) -> str:
    """Validate `url` and refuse it now if its host is private (the worker checks again)."""
    url = validate_url(url)
    parts = urlsplit(url)
    _public_address(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    return url


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every fetch: building it loads the CA bundle, 0.2 s a time on a
    busy machine — three quarters of a website sync when each page built its own (bench/website_sync.py).
    A context is safe to share between threads."""
    return httpx.create_ssl_context()


def fetch_url(
    url: str, *, content_types: dict[str, str] | None = None, etag: str = "", last_modified: str = ""
) -> FetchedPage:
    """GET `url` (following up to five redirects, each re-checked) and return its body.

    `content_types` maps the accepted media types to an extension (default: web pages and
    documents). With `etag` / `last_modified` from an earlier fetch the request is conditional:
    a server that supports it answers 304 and the page comes back `not_modified`, without a body.
    """
    url = validate_url(url)
    accepted = ALLOWED_CONTENT_TYPES if content_types is None else content_types
    conditional = {
        name: value for name, value in (("If-None-Match", etag), ("If-Modified-Since", last_modified)) if value
    }
    timeout = httpx.Timeout(settings.GROUNDWORK_FETCH_TIMEOUT)
    with httpx.Client(
        timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}, verify=_tls_context()
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = _public_address(host, port)
            literal = f"[{address}]" if ":" in address else address
            pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
            host_header = parts.netloc.rsplit("@", 1)[-1]
            try:
                with client.stream(
                    "GET", pinned, headers={"Host": host_header, **conditional}, extensions={"sni_hostname": host}
                ) as response:
                    validators = {
                        "etag": response.headers.get("etag", "")[:500],
                        "last_modified": response.headers.get("last-modified", "")[:100],
                    }
                    if response.status_code == 304 and conditional:
                        return FetchedPage(
                            url=url, content_type="", extension="", body=b"", not_modified=True, **validators
                        )
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        url = validate_url(urljoin(url, location))
                        continue
                    if response.status_code >= 400:
                        raise FetchRefused(
                            "url_http_error",
                            f"The page answered with HTTP {response.status_code}; nothing was imported.",
                            http_status=response.status_code,
                        )
                    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    extension = accepted.get(content_type)
                    if extension is None:
                        raise FetchRefused(
                            "url_unsupported_type",
                            f"That address returned “{content_type or 'unknown'}”, not a web page or a document "
                            "that can be read (HTML, text or PDF).",
                        )
                    body = bytearray()
                    for block in response.iter_bytes():
                        body.extend(block)
                        if len(body) > settings.GROUNDWORK_MAX_UPLOAD_BYTES:
                            raise FetchRefused("too_large", "The page is larger than the upload limit.")
                    return FetchedPage(
                        url=url, content_type=content_type, extension=extension, body=bytes(body), **validators
                    )
            except httpx.TimeoutException:
                raise FetchRefused(
                    "url_timeout", f"The page did not answer within {settings.GROUNDWORK_FETCH_TIMEOUT:g} seconds."
                ) from None
            except httpx.HTTPError as exc:
                raise FetchRefused("url_unreachable", f"The page could not be fetched: {exc}.") from None
    raise FetchRefused("url_redirects", f"The page redirected more than {MAX_REDIRECTS} times.")


# --- the stage -------------------------------------------------------------------------------


def fetch(job: Job) -> None:
    """For a web page: fetch it (outside any transaction) and store the body as the version's file.

    Other sources already have their file; they pass through untouched, and so do the pages of a
    website source: its sync fetched the page (conditionally) and stored the body it compared.
    """
    version = job.version
    document = version.document
    if document.source_type != SourceType.URL:
        return
    if version.file and WebPage.objects.filter(document_id=document.pk).exists():
        return
    page = fetch_url(document.source_url)
    name = f"page.{page.extension}"
    version.file.save(safe_storage_name(document.organization_id, name), ContentFile(page.body), save=False)
    version.original_filename = name
    version.size_bytes = len(page.body)
    version.sha256 = hashlib.sha256(page.body).hexdigest()
    version.save(update_fields=["file", "original_filename", "size_bytes", "sha256"])
    if document.title == document.source_url and page.extension == "html":
        title = html_title(page.body)
        if title:
            Document.objects.filter(pk=document.pk).update(title=title)
            document.title = title


def html_title(body: bytes) -> str:
    """The page's `<title>`, whitespace folded (empty when it has none)."""
    match = re.search(rb"<title[^>]*>(.*?)</title>", body[:200_000], re.IGNORECASE | re.DOTALL)
    if match is None:
        return ""
    return html.unescape(" ".join(match.group(1).decode("utf-8", "replace").split()))[:500]
