"""Tenant scoping and role checks for DRF views — used by every API of every app."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.models import ApiKey
from accounts.permissions import Action
from accounts.selectors import OrgContext


def org_context_from_request(request: Request) -> OrgContext | None:
    """The organisation an API request acts for: the API key's, else the session user's current one."""
    if isinstance(request.auth, ApiKey):
        key = request.auth
        return OrgContext(organization=key.organization, role=key.role, user=key.created_by, api_key=key)
    context = getattr(request._request, "org_context", None)
    return context if context else None


class OrgPermission(permissions.BasePermission):
    """Requires an organisation context whose role allows the view's action.

    Safe methods need `view.read_action` (default VIEW); others `view.write_action`
    (default EDIT_CONTENT).
    """

    message = "You do not have permission to do this in this organisation."

    def has_permission(self, request: Request, view: APIView) -> bool:
        context = org_context_from_request(request)
        if context is None:
            return False
        if request.method in permissions.SAFE_METHODS:
            action = getattr(view, "read_action", Action.VIEW)
        else:
            action = getattr(view, "write_action", Action.EDIT_CONTENT)
        if not context.allows(action):
            self.message = f"Your role ({context.role}) may not do this. Ask an admin of your organisation."
            return False
        request.org_context = context  # type: ignore[attr-defined]
        return True


class OrgScopedApiView(APIView):
    """Base of every organisation-scoped API view: `self.org` is the request's organisation."""

    permission_classes = (OrgPermission,)

    @property
    def org_context(self) -> OrgContext:
        return self.request.org_context  # type: ignore[attr-defined, no-any-return]

    @property
    def org(self) -> Any:
        return self.org_context.organization
