"""Celery task of the knowledge-gap inbox (thin: the work is `chat.gaps.services.gaps_refresh_all`)."""

from __future__ import annotations

from celery import shared_task

from chat.gaps import services


@shared_task(name="chat.gaps_refresh")
def gaps_refresh() -> int:
    """Group every bot's new refused and disliked answers (periodic); returns how many."""
    return services.gaps_refresh_all()
