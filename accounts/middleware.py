"""Attach the signed-in user's current organisation to every request as `request.org_context`."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from accounts.selectors import OrgContext, org_context_for_user

SESSION_ORG_KEY = "organization_id"


def _resolve(request: HttpRequest) -> OrgContext | None:
    user = request.user
    if not user.is_authenticated:
        return None
    preferred = request.session.get(SESSION_ORG_KEY)
    context = org_context_for_user(user=user, preferred_organization_id=preferred)  # type: ignore[arg-type]
    if context is not None and preferred != context.organization.pk:
        request.session[SESSION_ORG_KEY] = context.organization.pk
    return context


class CurrentOrganizationMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.org_context = SimpleLazyObject(lambda: _resolve(request))  # type: ignore[attr-defined]
        return self.get_response(request)
