"""groundwork_backup / groundwork_restore in this process: what a backup holds, and what a restore refuses.

The full round trip (restore into a fresh database and bucket, then the same answers) runs through
separate processes in tests/test_production_path.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from kb import services
from kb.backup import BackupError, backup_restore
from kb.services import knowledge_base_create

BODY = b"Opening hours\n\nThe shop opens at nine on weekdays and at ten on Saturdays.\n"


def _backup(tmp_path: Path, make_org: Any) -> tuple[Path, str]:
    kb = knowledge_base_create(organization=make_org(), name="Shop", created_by=None)
    result = services.document_upload(
        knowledge_base=kb, upload=SimpleUploadedFile("hours.txt", BODY), filename="hours.txt", uploaded_by=None,
        enqueue=False,
    )  # fmt: skip
    output = tmp_path / "backup"
    call_command("groundwork_backup", "--output", str(output))
    return output, str(result.version.file.name)


@pytest.mark.django_db(transaction=True)
def test_backup_holds_the_database_dump_and_every_original(tmp_path: Path, make_org: Any) -> None:
    output, name = _backup(tmp_path, make_org)
    manifest = json.loads((output / "manifest.json").read_text())
    assert (output / "database.dump").read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
    assert [f["name"] for f in manifest["files"]] == [name]
    assert (output / "files" / name).read_bytes() == BODY


@pytest.mark.django_db(transaction=True)
def test_backup_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(CommandError, match="is not empty"):
        call_command("groundwork_backup", "--output", str(tmp_path))


@pytest.mark.django_db(transaction=True)
def test_restore_refuses_a_damaged_copy_before_touching_anything(tmp_path: Path, make_org: Any) -> None:
    output, name = _backup(tmp_path, make_org)
    (output / "files" / name).write_bytes(BODY + b"tampered")
    with pytest.raises(BackupError, match="missing or damaged"):
        backup_restore(source=output)


@pytest.mark.django_db(transaction=True)
def test_restore_refuses_a_database_that_already_has_groundwork(tmp_path: Path, make_org: Any) -> None:
    output, _ = _backup(tmp_path, make_org)
    with pytest.raises(CommandError, match="already holds Groundwork tables"):
        call_command("groundwork_restore", str(output))


def test_restore_refuses_a_stored_name_that_leaves_the_backup(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(
        json.dumps({"format": 1, "files": [{"name": "../../etc/passwd", "size": 1, "sha256": "0"}]})
    )
    with pytest.raises(BackupError, match="leaves the backup folder"):
        backup_restore(source=tmp_path)


def test_restore_refuses_a_folder_that_is_not_a_backup(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="is not a Groundwork backup"):
        backup_restore(source=tmp_path)
