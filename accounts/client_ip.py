"""The client's address, honouring `X-Forwarded-For` only from the operator's trusted proxies.

Behind a reverse proxy every request's `REMOTE_ADDR` is the proxy, so per-address limits would
share one bucket; trusting `X-Forwarded-For` from anyone would let a client pick its own address.
So the header is read only when the peer is in `GROUNDWORK_TRUSTED_PROXIES`, from the right (the
hop our proxy appended) leftwards, skipping further trusted proxies: the first untrusted hop is the
client. Anything a client wrote further left is ignored.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _trusted(address: IPAddress) -> bool:
    return any(address in network for network in settings.GROUNDWORK_TRUSTED_PROXIES)


def client_ip(request: HttpRequest) -> str:
    """The address limits and logs should attribute `request` to."""
    peer = str(request.META.get("REMOTE_ADDR", ""))
    peer_address = _parse(peer)
    if peer_address is None or not _trusted(peer_address):
        return peer
    client = peer
    for hop in reversed(str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")):
        address = _parse(hop)
        if address is None:
            break  # garbage: a proxy of ours would not have written it; keep the last good hop
        client = str(address)
        if not _trusted(address):
            break
    return client
