"""Back up the database and every stored original into a new folder (see kb.backup and README).

python manage.py groundwork_backup --output /backups/2026-12-03
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kb.backup import BackupError, backup_create


class Command(BaseCommand):
    help = "Write a backup (database dump, stored originals, generated secret key) into a new folder."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", required=True, type=Path, help="A new or empty folder.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            summary = backup_create(output=options["output"])
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Backup written to {summary.path}: database and {summary.files} files ({summary.bytes} bytes)."
        )
