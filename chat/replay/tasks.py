"""Celery task of replays (thin: the work is `chat.replay.services.replay_execute`)."""

from __future__ import annotations

from celery import shared_task

from chat.replay import services


@shared_task(name="chat.replay_execute")
def replay_execute(replay_id: int) -> str:
    replay = services.replay_execute(replay_id=replay_id)
    return replay.status if replay is not None else ""
