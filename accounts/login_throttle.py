"""Sign-in throttling: failed password attempts counted per account and per client address.

Policy (README "Security"): after `ACCOUNT_FAILURES` failed sign-ins for one e-mail address, or
`IP_FAILURES` from one client address, within `WINDOW_SECONDS` of the first of them, every sign-in
for that account / from that address is refused — the right password too — until the window ends.
A successful sign-in clears the account's count (not the address's: one valid account must not
launder a password-spraying address). Counters live in Redis (fixed windows that start at the first
failure: `SET NX EX`, then `INCR`). If Redis is unreachable sign-ins are let through and a warning
is logged: the limiter failing must not lock every member out.
"""

from __future__ import annotations

import hashlib
import logging

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

ACCOUNT_FAILURES = 10
IP_FAILURES = 30
WINDOW_SECONDS = 15 * 60
KEY_PREFIX = "gw:login:fail:"

_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """One client per process (it pools its connections); short timeouts so sign-in never stalls."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _client


def _account_key(email: str) -> str:
    return KEY_PREFIX + "acct:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def _ip_key(ip: str) -> str:
    return KEY_PREFIX + "ip:" + (ip or "unknown")


def login_is_locked(*, email: str, ip: str) -> bool:
    """Whether sign-ins for `email` or from `ip` are refused right now."""
    try:
        account, address = redis_client().mget([_account_key(email), _ip_key(ip)])
    except redis.RedisError as exc:
        logger.warning("Sign-in throttle unavailable, attempt let through: %s", exc)
        return False
    return int(account or 0) >= ACCOUNT_FAILURES or int(address or 0) >= IP_FAILURES


def login_failure_record(*, email: str, ip: str) -> None:
    """Count one failed sign-in against the account and the address."""
    try:
        pipe = redis_client().pipeline()
        for key in (_account_key(email), _ip_key(ip)):
            pipe.set(key, 0, ex=WINDOW_SECONDS, nx=True)
            pipe.incr(key)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("Sign-in throttle unavailable, failure not counted: %s", exc)


def login_success_record(*, email: str) -> None:
    """Clear the account's failures after a successful sign-in."""
    try:
        redis_client().delete(_account_key(email))
    except redis.RedisError as exc:
        logger.warning("Sign-in throttle unavailable, failures not cleared: %s", exc)
