"""Writes for users, organisations, memberships and API keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import ApiKey, AuditEvent, Invitation, Membership, Organization, Role, User
from accounts.selectors import OrgContext, hash_api_key


def organization_create(*, name: str, owner: User | None = None, slug: str | None = None) -> Organization:
    """Create an organisation (unique slug) and make `owner` its owner."""
    base = slugify(slug or name)[:70] or "org"
    candidate, n = base, 1
    while Organization.objects.filter(slug=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    with transaction.atomic():
        org = Organization.objects.create(name=name, slug=candidate)
        if owner is not None:
            Membership.objects.create(user=owner, organization=org, role=Role.OWNER)
    return org


def membership_set(*, user: User, organization: Organization, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(user=user, organization=organization, defaults={"role": role})
    return membership


def user_get_or_create(*, email: str, password: str | None = None, full_name: str = "") -> tuple[User, bool]:
    email = email.strip().lower()
    user = User.objects.filter(email=email).first()
    if user is not None:
        return user, False
    return User.objects.create_user(email=email, password=password, full_name=full_name), True


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    raw_key: str  # shown once; only its hash is stored


def api_key_issue(
    *,
    organization: Organization,
    name: str,
    created_by: User | None,
    role: str = Role.ADMIN,
    context: OrgContext | None = None,
) -> IssuedApiKey:
    """Create a key `gw_<prefix>_<secret>` and store only its hash (audited when `context` is given)."""
    prefix = secrets.token_hex(6)
    while ApiKey.objects.filter(prefix=prefix).exists():
        prefix = secrets.token_hex(6)
    raw_key = f"gw_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        organization=organization,
        name=name,
        prefix=prefix,
        key_hash=hash_api_key(raw_key),
        role=role,
        created_by=created_by,
    )
    if context is not None:
        audit_record(context=context, action="api_key.create", target=key)
    return IssuedApiKey(api_key=key, raw_key=raw_key)


def api_key_revoke(*, api_key: ApiKey, context: OrgContext | None = None) -> None:
    """Revoke a key at once (audited when `context` is given)."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if context is not None:
        audit_record(context=context, action="api_key.revoke", target=api_key)


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use, at most once a minute per key so hot keys don't write on every request."""
    now = timezone.now()
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


# --- audit log -------------------------------------------------------------------------------


def audit_record(*, context: Any, action: str, target: Any = None, detail: dict[str, Any] | None = None) -> AuditEvent:
    """Record a staff action. `context` is the request's OrgContext (user or API key)."""
    actor = getattr(context, "user", None)
    api_key = getattr(context, "api_key", None)
    label = actor.email if actor is not None else (f"API key {api_key.name}" if api_key is not None else "system")
    return AuditEvent.objects.create(
        organization=context.organization,
        actor=actor,
        actor_label=label,
        action=action,
        target_type=target._meta.model_name if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=str(target)[:500] if target is not None else "",
        detail=detail or {},
    )


# --- organisation settings and users ----------------------------------------------------------


def organization_retention_set(
    *, organization: Organization, days: int | None, context: OrgContext | None = None
) -> Organization:
    """Keep conversations `days` days (None: forever); audited when `context` is given."""
    organization.conversation_retention_days = days
    organization.save(update_fields=["conversation_retention_days"])
    if context is not None:
        audit_record(
            context=context,
            action="settings.retention",
            target=organization,
            detail={"days": organization.conversation_retention_days},
        )
    return organization


def user_password_set(*, user: User, password: str) -> User:
    """Set a user's password (already validated, e.g. by Django's SetPasswordForm)."""
    user.set_password(password)
    user.save()
    return user


# --- members and invitations -----------------------------------------------------------------

INVITATION_DAYS = 7


class MembershipError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # only in the e-mailed link; its hash is stored


def invitation_create(
    *,
    organization: Organization,
    email: str,
    role: str,
    invited_by: User | None,
    accept_url_base: str,
    context: OrgContext | None = None,
) -> IssuedInvitation:
    """Invite `email` with `role` and send the link through Django's e-mail backend.

    Audited when `context` (the staff request's) is given.
    """
    from datetime import timedelta

    from django.core.exceptions import ValidationError
    from django.core.mail import BadHeaderError, send_mail
    from django.core.validators import validate_email

    email = email.strip().lower()
    try:
        validate_email(email)  # also refuses CR/LF, which would otherwise reach the mail headers
        if len(email) > Invitation._meta.get_field("email").max_length:  # type: ignore[operator]
            raise ValidationError("too long")
    except ValidationError:
        raise MembershipError("Enter a valid e-mail address to invite.") from None
    if role not in Role.values:
        raise MembershipError("Unknown role.")
    if role == Role.OWNER:
        raise MembershipError("Owners cannot be invited; invite an admin and transfer ownership later.")
    if Membership.objects.filter(organization=organization, user__email=email).exists():
        raise MembershipError(f"{email} is already a member.")
    token = secrets.token_urlsafe(32)
    link = f"{accept_url_base.rstrip('/')}/accounts/invitations/{token}/"
    inviter = invited_by.get_full_name() if invited_by else "A colleague"
    try:
        # The mail is sent inside the transaction: if it cannot be sent, no invitation row stays
        # behind (an invitation nobody received would block re-inviting nothing, but would linger).
        with transaction.atomic():
            invitation = Invitation.objects.create(
                organization=organization,
                email=email,
                role=role,
                token_hash=hash_api_key(token),
                invited_by=invited_by,
                expires_at=timezone.now() + timedelta(days=INVITATION_DAYS),
            )
            if context is not None:
                audit_record(context=context, action="member.invite", target=invitation)
            send_mail(
                subject=f"You are invited to {organization.name} on Groundwork",
                message=(
                    f"{inviter} invited you to join {organization.name} as {role}.\n\n"
                    f"Accept the invitation (valid for {INVITATION_DAYS} days):\n{link}\n"
                ),
                from_email=None,
                recipient_list=[email],
            )
    except (OSError, BadHeaderError) as exc:  # smtplib's errors are OSErrors
        raise MembershipError(f"The invitation e-mail could not be sent ({exc}). Try again later.") from exc
    return IssuedInvitation(invitation=invitation, token=token)


def invitation_get_valid(*, token: str) -> Invitation | None:
    invitation = Invitation.objects.select_related("organization").filter(token_hash=hash_api_key(token)).first()
    if invitation is None or invitation.accepted_at is not None or invitation.expires_at < timezone.now():
        return None
    return invitation


def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    with transaction.atomic():
        membership = membership_set(user=user, organization=invitation.organization, role=invitation.role)
        Invitation.objects.filter(pk=invitation.pk).update(accepted_at=timezone.now())
    return membership


def membership_change_role(
    *, actor_role: str, membership: Membership, role: str, context: OrgContext | None = None
) -> Membership:
    """Change a member's role. Only owners make or unmake owners; an organisation keeps one owner.

    Audited (old and new role) when `context` is given.
    """
    if role not in Role.values:
        raise MembershipError("Unknown role.")
    if Role.OWNER in (role, membership.role) and actor_role != Role.OWNER:
        raise MembershipError("Only an owner can make or change an owner.")
    if membership.role == Role.OWNER and role != Role.OWNER and _owner_count(membership.organization) == 1:
        raise MembershipError("An organisation needs at least one owner.")
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    if context is not None:
        audit_record(context=context, action="member.role", target=membership, detail={"from": old, "to": role})
    return membership


def membership_remove(
    *, actor_role: str, actor: User | None, membership: Membership, context: OrgContext | None = None
) -> None:
    """Remove a member and revoke the API keys they created here (keys act for their creator).

    Owners cannot be removed by others. Audited when `context` is given.
    """
    if membership.role == Role.OWNER and (actor is None or actor.pk != membership.user_id):
        raise MembershipError("An owner cannot be removed by someone else.")
    if membership.role == Role.OWNER and _owner_count(membership.organization) == 1:
        raise MembershipError("The last owner cannot leave; make someone else owner first.")
    with transaction.atomic():
        membership.delete()
        ApiKey.objects.filter(
            organization_id=membership.organization_id, created_by_id=membership.user_id, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
    if context is not None:
        # After the delete, as it always was: the event keeps the member's label.
        audit_record(context=context, action="member.remove", target=membership)


def _owner_count(organization: Organization) -> int:
    return Membership.objects.filter(organization=organization, role=Role.OWNER).count()
