"""Sign-in, sign-out, password change and the organisation switcher."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings as django_settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts import login_throttle, services
from accounts.client_ip import client_ip
from accounts.decorators import org_required
from accounts.middleware import SESSION_ORG_KEY
from accounts.models import ApiKey, AuditEvent, Membership, Role
from accounts.permissions import Action
from accounts.selectors import OrgContext, membership_get


class ThrottledAuthenticationForm(AuthenticationForm):
    """Says why a locked sign-in is refused (the backend refuses it either way)."""

    def clean(self) -> dict[str, Any]:
        email = self.cleaned_data.get("username")
        if email and login_throttle.login_is_locked(email=email, ip=client_ip(self.request) if self.request else ""):
            raise ValidationError(
                f"Too many failed sign-in attempts. Try again in {login_throttle.WINDOW_SECONDS // 60} minutes.",
                code="throttled",
            )
        return super().clean()


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True
    authentication_form = ThrottledAuthenticationForm


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("kb:dashboard")

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        messages.success(self.request, "Your password was changed.")
        return super().form_valid(form)


@login_required
@require_POST
def organization_switch(request: HttpRequest) -> HttpResponse:
    """Make another of the user's organisations the current one."""
    try:
        organization_id = int(request.POST.get("organization", ""))
    except ValueError:
        organization_id = -1
    membership = membership_get(user=request.user, organization_id=organization_id)  # type: ignore[arg-type]
    if membership is None:
        messages.error(request, "You are not a member of that organisation.")
    else:
        request.session[SESSION_ORG_KEY] = membership.organization_id
        messages.success(request, f"Now working in {membership.organization.name}.")
    next_url = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = "/"
    return redirect(next_url)


# --- team, API keys, audit log, organisation settings ------------------------------------------


def _id_or_404(raw: str | None) -> int:
    """A row id from a form field; anything but a positive bigint is no such row."""
    if raw is None or not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 0 < int(raw) < 2**63:
        raise Http404("No such item.")
    return int(raw)


def _base_url(request: HttpRequest) -> str:
    return django_settings.PUBLIC_URL or request.build_absolute_uri("/").rstrip("/")


@org_required()
def team(request: HttpRequest, context: OrgContext) -> HttpResponse:
    from django.shortcuts import render

    members = (
        Membership.objects.filter(organization=context.organization).select_related("user").order_by("user__email")
    )
    invitations = context.organization.invitations.filter(accepted_at__isnull=True).order_by("-created_at")
    return render(
        request,
        "accounts/team.html",
        {
            "members": members,
            "invitations": invitations,
            "roles": Role.choices,
            "can_manage": context.allows(Action.MANAGE_MEMBERS),
            "is_owner": context.role == Role.OWNER,
        },
    )


@org_required(Action.MANAGE_MEMBERS)
@require_POST
def team_action(request: HttpRequest, context: OrgContext, action: str) -> HttpResponseBase:
    try:
        if action == "invite":
            issued = services.invitation_create(
                organization=context.organization,
                email=request.POST.get("email", ""),
                role=request.POST.get("role", Role.VIEWER),
                invited_by=context.user,
                accept_url_base=_base_url(request),
                context=context,
            )
            messages.success(request, f"Invitation sent to {issued.invitation.email}.")
        elif action in ("role", "remove"):
            membership_id = _id_or_404(request.POST.get("membership"))
            membership = (
                Membership.objects.filter(organization=context.organization, pk=membership_id)
                .select_related("user")
                .first()
            )
            if membership is None:
                raise Http404("No such member.")
            if action == "role":
                services.membership_change_role(
                    actor_role=context.role, membership=membership, role=request.POST.get("role", ""), context=context
                )
                messages.success(request, f"{membership.user.email} is now {membership.role}.")
            else:
                services.membership_remove(
                    actor_role=context.role, actor=context.user, membership=membership, context=context
                )
                messages.success(request, f"{membership.user.email} was removed.")
        else:
            raise Http404("Unknown action.")
    except services.MembershipError as exc:
        messages.error(request, exc.message)
    return redirect("accounts:team")


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Open the e-mailed link: join, after setting a password (new account) or signing in (existing one).

    Opening the link (GET) changes nothing. An account that already has a password joins only
    when its owner is signed in: the link alone must not add someone to another organisation.
    """
    from django.contrib.auth.forms import SetPasswordForm
    from django.shortcuts import render

    from accounts.models import User

    invitation = services.invitation_get_valid(token=token)
    if invitation is None:
        return render(request, "accounts/invitation_invalid.html", status=404)
    if request.user.is_authenticated and request.user.email != invitation.email:  # type: ignore[union-attr]
        messages.error(request, f"This invitation is for {invitation.email}; sign out first.")
        return redirect("kb:dashboard")
    existing = User.objects.filter(email=invitation.email).first()
    signed_in = request.user.is_authenticated
    needs_password = existing is None or not existing.has_usable_password()
    if not signed_in and not needs_password:
        if request.method == "POST":
            messages.info(request, "Sign in to accept the invitation.")
            return redirect(f"{reverse('accounts:login')}?{urlencode({'next': request.path})}")
        return render(request, "accounts/invitation_accept.html", {"invitation": invitation, "sign_in_first": True})
    form = None
    if needs_password and not signed_in:
        form = SetPasswordForm(existing or User(email=invitation.email), request.POST or None)
    if request.method == "POST" and (form is None or form.is_valid()):
        with transaction.atomic():
            user = existing or services.user_get_or_create(email=invitation.email)[0]
            if form is not None:
                services.user_password_set(user=user, password=form.cleaned_data["new_password1"])
            services.invitation_accept(invitation=invitation, user=user)
        if not signed_in:
            auth_login(request, user, backend="accounts.backends.ThrottledModelBackend")
        request.session[SESSION_ORG_KEY] = invitation.organization_id
        messages.success(request, f"Welcome to {invitation.organization.name}.")
        return redirect("kb:dashboard")
    return render(request, "accounts/invitation_accept.html", {"invitation": invitation, "form": form})


@org_required(Action.MANAGE_KEYS)
def api_keys(request: HttpRequest, context: OrgContext) -> HttpResponse:
    from django.shortcuts import render

    new_key = None
    if request.method == "POST":
        if request.POST.get("revoke"):
            key_id = _id_or_404(request.POST["revoke"])
            key = ApiKey.objects.filter(organization=context.organization, pk=key_id).first()
            if key is None:
                raise Http404("No such key.")
            services.api_key_revoke(api_key=key, context=context)
            messages.success(request, f"Key “{key.name}” revoked.")
        else:
            role = request.POST.get("role", Role.ADMIN)
            if role not in Role.values or (role == Role.OWNER and context.role != Role.OWNER):
                role = Role.ADMIN
            issued = services.api_key_issue(
                organization=context.organization,
                name=(request.POST.get("name") or "API key").strip()[:100],
                created_by=context.user,
                role=role,
                context=context,
            )
            new_key = issued.raw_key  # shown once, never stored
    keys = ApiKey.objects.filter(organization=context.organization).select_related("created_by")
    return render(request, "accounts/api_keys.html", {"keys": keys, "new_key": new_key, "roles": Role.choices})


@org_required(Action.MANAGE_SETTINGS)
def audit_log(request: HttpRequest, context: OrgContext) -> HttpResponse:
    from django.core.paginator import Paginator
    from django.shortcuts import render

    events = AuditEvent.objects.filter(organization=context.organization)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "accounts/audit_log.html", {"page": page})
