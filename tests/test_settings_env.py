from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_url
from config.settings import _database_from_url


def test_bad_integer_fails_with_the_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUNDWORK_MAX_UPLOAD_MB", "fifty")
    with pytest.raises(ImproperlyConfigured, match="GROUNDWORK_MAX_UPLOAD_MB='fifty' is not a whole number"):
        env_int("GROUNDWORK_MAX_UPLOAD_MB", 50)


def test_integer_below_minimum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_LIMIT", "0")
    with pytest.raises(ImproperlyConfigured, match="below the minimum 1"):
        env_int("X_LIMIT", 5, minimum=1)


def test_bad_boolean_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUNDWORK_DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="not a boolean"):
        env_bool("GROUNDWORK_DEBUG", False)
    monkeypatch.setenv("GROUNDWORK_DEBUG", "Yes")
    assert env_bool("GROUNDWORK_DEBUG", False) is True


def test_database_url_with_wrong_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@db/app")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL must start with one of"):
        env_url("DATABASE_URL", schemes={"postgres", "postgresql"})


def test_secret_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "hosts"
    secret.write_text("a.example, b.example\n")
    monkeypatch.setenv("ALLOWED_HOSTS_FILE", str(secret))
    assert env_list("ALLOWED_HOSTS", []) == ["a.example", "b.example"]


def test_database_url_parsing_handles_tcp_and_socket_urls() -> None:
    tcp = _database_from_url("postgres://app:s%40cret@db.internal:5433/groundwork?sslmode=require")
    assert (tcp["HOST"], tcp["PORT"], tcp["NAME"], tcp["USER"], tcp["PASSWORD"]) == (
        "db.internal",
        "5433",
        "groundwork",
        "app",
        "s@cret",
    )
    assert tcp["OPTIONS"] == {
        "sslmode": "require",
        "pool": {"min_size": 2, "max_size": 40, "timeout": 10.0},
        "prepare_threshold": 2**31 - 1,  # statements that ask are prepared (kb.match_ranking), no other
    }
    assert tcp["CONN_MAX_AGE"] == 0  # Django's pool refuses persistent connections
    socket = _database_from_url("postgresql://postgres:@/groundwork?host=/tmp/pg")
    assert socket["HOST"] == "/tmp/pg" and socket["NAME"] == "groundwork"
    with pytest.raises(ImproperlyConfigured, match="no database name"):
        _database_from_url("postgres://u:p@host:5432/")


def test_pool_is_sized_from_the_environment_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import config.settings

    try:
        monkeypatch.setenv("GROUNDWORK_DB_POOL_MAX", "6")
        monkeypatch.setenv("GROUNDWORK_DB_POOL_MIN", "9")  # clamped to the maximum
        monkeypatch.setenv("GROUNDWORK_DB_POOL_TIMEOUT", "2.5")
        pooled = importlib.reload(config.settings).DATABASES["default"]
        assert pooled["OPTIONS"]["pool"] == {"min_size": 6, "max_size": 6, "timeout": 2.5}
        monkeypatch.setenv("GROUNDWORK_DB_POOL_MAX", "0")
        monkeypatch.setenv("GROUNDWORK_DB_CONN_MAX_AGE", "60")
        monkeypatch.setenv("GROUNDWORK_DB_PREPARED_STATEMENTS", "false")  # behind PgBouncer < 1.21
        plain = importlib.reload(config.settings).DATABASES["default"]
        assert "pool" not in plain["OPTIONS"] and plain["CONN_MAX_AGE"] == 60
        assert "prepare_threshold" not in plain["OPTIONS"]  # Django's default: nothing prepared
    finally:
        monkeypatch.undo()
        importlib.reload(config.settings)


def test_file_storage_defaults_to_the_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import _file_storage

    monkeypatch.delenv("GROUNDWORK_STORAGE", raising=False)
    assert _file_storage() == {"BACKEND": "django.core.files.storage.FileSystemStorage"}


def test_s3_file_storage_is_built_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import _file_storage

    monkeypatch.setenv("GROUNDWORK_STORAGE", "S3")
    monkeypatch.setenv("AWS_STORAGE_BUCKET_NAME", "originals")
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_S3_ADDRESSING_STYLE", "path")
    monkeypatch.setenv("AWS_LOCATION", "/groundwork/")
    storage = _file_storage()
    options = storage["OPTIONS"]
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    assert isinstance(options, dict)
    assert (options["bucket_name"], options["endpoint_url"], options["location"]) == (
        "originals",
        "http://minio:9000",
        "groundwork",
    )
    assert options["file_overwrite"] is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GROUNDWORK_STORAGE": "ftp"}, "GROUNDWORK_STORAGE must be 'filesystem' or 's3'"),
        ({"GROUNDWORK_STORAGE": "s3"}, "needs AWS_STORAGE_BUCKET_NAME"),
        (
            {"GROUNDWORK_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": "b", "AWS_S3_ENDPOINT_URL": "minio:9000"},
            "AWS_S3_ENDPOINT_URL must start with one of",
        ),
        (
            {"GROUNDWORK_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": "b", "AWS_S3_ADDRESSING_STYLE": "sideways"},
            "AWS_S3_ADDRESSING_STYLE must be",
        ),
    ],
)
def test_bad_file_storage_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    from config.settings import _file_storage

    for name in ("AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL", "AWS_S3_ADDRESSING_STYLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        _file_storage()
