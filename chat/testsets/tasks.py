"""Celery task of evaluation runs (thin: the work is `chat.testsets.runner.eval_run_execute`)."""

from __future__ import annotations

from celery import shared_task

from chat.testsets import runner


@shared_task(name="chat.eval_run_execute")
def eval_run_execute(run_id: int) -> str:
    """Evaluate a queued run; returns its final status ("" when it was gone or already claimed)."""
    run = runner.eval_run_execute(run_id=run_id)
    return run.status if run is not None else ""
