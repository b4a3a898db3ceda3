"""The Celery application. Workers run `celery -A config worker`."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Celery's Django fixup runs Django's system checks when a worker or beat starts, and the URL checks
# import every view (DRF, drf-spectacular, the chat stack): ~1 s of CPU before the first ping, for
# nothing a worker uses. The web process, `manage.py check` and the tests still run them.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

logger = logging.getLogger(__name__)

app = Celery("groundwork")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class RequeueAfterReconnect(bootsteps.StartStopStep):
    """Re-send queued documents each time a worker's broker connection comes back.

    Celery reconnects to a restarted Redis by itself (`broker_connection_retry`), but a Redis that
    keeps nothing on disk (the embedded one; `--save ""`) comes back empty: the messages of queued
    documents are gone. The first start is covered by `kb.tasks`' worker_ready handler.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.starts = 0

    def start(self, parent: Any) -> None:
        self.starts += 1
        if self.starts == 1:
            return
        from kb.tasks import documents_requeue

        try:
            sent = documents_requeue()
        except Exception:  # never stop the consumer from running; the recovery beat is the backstop
            logger.exception("Re-sending queued documents after a broker reconnect failed")
            return
        if sent:
            logger.info("Broker connection back: re-sent %s queued document(s)", sent)


app.steps["consumer"].add(RequeueAfterReconnect)
