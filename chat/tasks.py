"""Celery tasks of the chat app."""

from __future__ import annotations

from celery import shared_task

from chat import services


@shared_task(name="chat.conversations_purge_expired")
def conversations_purge_expired() -> int:
    return services.conversations_purge_expired()


# Celery discovers `<app>.tasks` only; these tasks live with their packages.
from chat.gaps.tasks import gaps_refresh  # noqa: E402, F401
from chat.replay.tasks import replay_execute  # noqa: E402, F401
from chat.testsets.tasks import eval_run_execute  # noqa: E402, F401
