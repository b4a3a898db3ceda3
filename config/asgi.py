"""ASGI entry point (uvicorn): streaming answers need an async server."""

from __future__ import annotations

import logging
import os
import threading

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does first

from config.lanes import LanedASGIHandler  # noqa: E402 - needs the apps loaded

# Django's ASGI handler with each request's middleware and view run in a lane (config.lanes).
application = LanedASGIHandler()


def _warm_query_embedder() -> None:
    """Load the local embedding model now, so the first question does not wait for it (1-2 s).

    In a background thread: the server answers (health checks, pages) meanwhile; a question that
    arrives first waits for the same load behind the embedder's lock.
    """
    from kb.pipeline.embed import warm_up

    try:
        warm_up()
    except Exception:  # the first question reports a broken model properly
        logging.getLogger(__name__).warning("Could not load the local embedding model at start", exc_info=True)


threading.Thread(target=_warm_query_embedder, name="warm-query-embedder", daemon=True).start()
