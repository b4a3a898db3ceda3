"""The organisation settings page: conversation retention and the model providers' API keys.

It lives in chat because the provider keys are chat's (`chat.ProviderKey`); accounts imports no
app above it. `config/urls.py` mounts it at its historical place, `accounts:settings`.
"""

from __future__ import annotations

import re

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.decorators import org_required
from accounts.permissions import Action
from accounts.selectors import OrgContext
from accounts.services import organization_retention_set
from chat.models import ProviderKey
from chat.services import provider_key_set

MAX_RETENTION_DAYS = 36_500  # a hundred years; anything longer is "forever" (leave it empty)


@org_required(Action.MANAGE_SETTINGS)
def organization_settings(request: HttpRequest, context: OrgContext) -> HttpResponse:
    org = context.organization
    if request.method == "POST":
        if "retention" in request.POST:
            raw = request.POST.get("retention", "").strip()
            # ASCII digits only ("²".isdigit() is True) and a bound the column holds.
            if raw and not (re.fullmatch(r"[0-9]{1,6}", raw) and 1 <= int(raw) <= MAX_RETENTION_DAYS):
                messages.error(
                    request, f"Retention must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, or empty."
                )
            else:
                organization_retention_set(organization=org, days=int(raw) if raw else None, context=context)
                messages.success(request, "Retention saved.")
        elif request.POST.get("provider") and request.POST.get("api_key"):
            key = provider_key_set(
                organization=org,
                provider=request.POST["provider"],
                api_key=request.POST["api_key"],
                api_base=request.POST.get("api_base", "").strip(),
                context=context,
            )
            messages.success(request, f"{key.provider} key saved (…{key.last_four}).")
        return redirect("accounts:settings")
    return render(
        request,
        "accounts/settings.html",
        {"org": org, "provider_keys": ProviderKey.objects.filter(organization=org)},
    )
