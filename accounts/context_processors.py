from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.selectors import organizations_for_user


def current_organization(request: HttpRequest) -> dict[str, Any]:
    if not request.user.is_authenticated:
        return {}
    context = getattr(request, "org_context", None)
    return {
        "org_context": context if context else None,
        "user_organizations": organizations_for_user(user=request.user),  # type: ignore[arg-type]
    }
