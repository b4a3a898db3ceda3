"""View decorators for the staff UI: sign-in, current organisation, role check — in one place."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import render

from accounts.permissions import Action
from accounts.selectors import OrgContext

ViewFunc = Callable[..., HttpResponseBase]


def org_required(action: Action = Action.VIEW) -> Callable[[ViewFunc], ViewFunc]:
    """Require a signed-in member of the current organisation whose role allows `action`."""

    def decorator(view: ViewFunc) -> ViewFunc:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            context: OrgContext | None = getattr(request, "org_context", None) or None
            if context is None:
                return render(request, "accounts/no_organization.html", status=403)
            if not context.allows(action):
                raise PermissionDenied(f"Your role ({context.role}) may not do this.")
            return view(request, context, *args, **kwargs)

        return wrapped

    return decorator
