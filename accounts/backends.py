"""Password sign-in with throttling (see `accounts.login_throttle` for the policy).

Every password sign-in — the staff login page and the Django admin's — goes through Django's
`authenticate()` and so through this backend; it refuses locked accounts and addresses before
checking the password, and counts failures after.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from accounts import login_throttle
from accounts.client_ip import client_ip
from accounts.models import User


class ThrottledModelBackend(ModelBackend):
    def authenticate(  # type: ignore[override]
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        email = username if username is not None else kwargs.get(User.USERNAME_FIELD)
        if email is None or password is None:
            return None
        ip = client_ip(request) if request is not None else ""
        if login_throttle.login_is_locked(email=str(email), ip=ip):
            raise PermissionDenied("Too many failed sign-in attempts.")  # stops authenticate() here
        user = super().authenticate(request, username=email, password=password, **kwargs)
        if user is None:
            login_throttle.login_failure_record(email=str(email), ip=ip)
        else:
            login_throttle.login_success_record(email=str(email))
        return user  # type: ignore[return-value]
