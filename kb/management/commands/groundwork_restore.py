"""Restore a backup made by `groundwork_backup` into an empty database and the configured storage.

GROUNDWORK_DATA_DIR=/srv/groundwork-new python manage.py groundwork_restore /backups/2026-12-03
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kb.backup import BackupError, backup_restore


class Command(BaseCommand):
    help = "Restore a groundwork_backup folder into an empty database and the configured file storage."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", type=Path, help="The backup folder.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            summary = backup_restore(source=options["source"])
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Restored the database and {summary.files} files ({summary.bytes} bytes) from {summary.path}."
        )
        if summary.note:
            self.stdout.write(summary.note)
