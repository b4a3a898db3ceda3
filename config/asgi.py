"""ASGI entry point (uvicorn): streaming answers need an async server."""

from __future__ import annotations

import logging
import os
import threading

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()


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
