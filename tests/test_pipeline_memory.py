"""Memory of a worker process (kb.pipeline.memory): freed heap goes back to the system between
stages, glibc's arenas are capped from a setting read from the environment."""

from __future__ import annotations

import importlib
from io import BytesIO

import pytest

from kb.models import DocumentStatus, DocumentVersion
from kb.pipeline import memory, run
from kb.services import document_upload, knowledge_base_create

glibc_only = pytest.mark.skipif(memory.glibc() is None, reason="needs glibc's malloc_trim and mallopt")


@glibc_only
def test_freed_heap_is_returned_to_the_system() -> None:
    # 1 KB objects come from malloc (pymalloc takes only up to 512 bytes): 64 MB of them, freed.
    blocks = [bytes(1024) for _ in range(64 * 1024)]
    del blocks
    assert memory.release_freed_memory() is True


@glibc_only
def test_arena_cap_is_applied_and_zero_leaves_the_default() -> None:
    assert memory.configure_allocator(arena_max=8) is True
    assert memory.configure_allocator(arena_max=0) is False


def test_arena_cap_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import config.settings

    try:
        monkeypatch.setenv("GROUNDWORK_WORKER_MALLOC_ARENAS", "4")
        assert importlib.reload(config.settings).GROUNDWORK_WORKER_MALLOC_ARENAS == 4
        monkeypatch.delenv("GROUNDWORK_WORKER_MALLOC_ARENAS")
        assert importlib.reload(config.settings).GROUNDWORK_WORKER_MALLOC_ARENAS == 2
        monkeypatch.setenv("GROUNDWORK_WORKER_MAX_MEMORY_MB", "1000")
        assert importlib.reload(config.settings).CELERY_WORKER_MAX_MEMORY_PER_CHILD == 1000 * 1024
    finally:
        monkeypatch.undo()
        importlib.reload(config.settings)


@pytest.mark.django_db
def test_memory_is_released_after_every_stage(make_org, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    released: list[int] = []

    def release() -> bool:
        released.append(1)
        return True

    monkeypatch.setattr(run, "release_freed_memory", release)
    kb = knowledge_base_create(organization=make_org(), name="Handbook", created_by=None)
    result = document_upload(
        knowledge_base=kb,
        upload=BytesIO(b"# Returns\n\nUnused items can be returned within 30 days for a full refund.\n"),
        filename="returns.md",
        uploaded_by=None,
        enqueue=False,
    )
    run.version_ingest(version_id=result.version.pk)
    assert DocumentVersion.objects.get(pk=result.version.pk).status == DocumentStatus.READY
    assert len(released) == len(run.STAGES)
