"""The settings object: defaults < TOML file < SQUALL_* environment < explicit overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from squall.settings import Settings, default_data_dir


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SQUALL_* variable of the developer's shell leaks in; the data home is private."""
    for key in list(os.environ):
        if key.upper().startswith("SQUALL_"):
            monkeypatch.delenv(key)
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ================================================================== defaults


def test_defaults(clean_env: Path) -> None:
    s = Settings()
    assert s.host == "127.0.0.1"
    assert s.port == 9000
    assert s.data_dir == clean_env / "squall"
    assert s.database_url == ""
    assert s.account_id == "123456789012"
    assert s.region == "us-east-1"
    assert s.isolation == "auto"
    assert s.keep_alive_seconds == 300.0
    assert s.account_concurrency == 1000
    assert s.max_log_bytes_per_invocation == 1 << 20
    assert s.shutdown_grace_seconds == 10.0
    assert Settings.load() == s


def test_default_data_dir_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "share" / "squall"
    monkeypatch.setenv("XDG_DATA_HOME", "")
    assert default_data_dir() == tmp_path / ".local" / "share" / "squall"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]


# ================================================================== environment


def test_env_vars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SQUALL_HOST", "0.0.0.0")
    monkeypatch.setenv("SQUALL_PORT", "8123")
    monkeypatch.setenv("SQUALL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SQUALL_ACCOUNT_ID", "000011112222")
    monkeypatch.setenv("SQUALL_REGION", "eu-west-2")
    monkeypatch.setenv("SQUALL_ISOLATION", "process")
    monkeypatch.setenv("SQUALL_KEEP_ALIVE_SECONDS", "1.5")
    monkeypatch.setenv("SQUALL_ACCOUNT_CONCURRENCY", "7")
    monkeypatch.setenv("SQUALL_MAX_LOG_BYTES_PER_INVOCATION", "8192")
    monkeypatch.setenv("SQUALL_SHUTDOWN_GRACE_SECONDS", "0")
    monkeypatch.setenv("SQUALL_DATABASE_URL", "postgresql://u@h/db")
    for s in (Settings(), Settings.load()):
        assert s.host == "0.0.0.0"
        assert s.port == 8123
        assert s.data_dir == tmp_path / "data"
        assert s.account_id == "000011112222"
        assert s.region == "eu-west-2"
        assert s.isolation == "process"
        assert s.keep_alive_seconds == 1.5
        assert s.account_concurrency == 7
        assert s.max_log_bytes_per_invocation == 8192
        assert s.shutdown_grace_seconds == 0
        assert s.database == "postgresql://u@h/db"


def test_env_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("squall_port", "8124")
    assert Settings.load().port == 8124


def test_unprefixed_env_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "1")
    monkeypatch.setenv("REGION", "eu-west-1")
    s = Settings.load()
    assert (s.port, s.region) == (9000, "us-east-1")


def test_data_dir_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SQUALL_DATA_DIR", "~/squall-data")
    assert Settings.load().data_dir == tmp_path / "squall-data"
    assert Settings(data_dir="~/x").data_dir == tmp_path / "x"


# ================================================================== file


def test_toml_file_by_argument(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path / "squall.toml",
        'host = "0.0.0.0"\nport = 7000\nregion = "ap-southeast-2"\nisolation = "linux"\n'
        f'data_dir = "{tmp_path / "fdata"}"\nunknown_key = 1\n',
    )
    s = Settings.load(path)
    assert (s.host, s.port, s.region, s.isolation) == ("0.0.0.0", 7000, "ap-southeast-2", "linux")
    assert s.data_dir == tmp_path / "fdata"
    assert s.account_id == "123456789012"  # untouched default
    assert Settings.load(str(path)) == s


def test_toml_file_by_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", "port = 7001\n")
    monkeypatch.setenv("SQUALL_CONFIG_FILE", str(path))
    assert Settings.load().port == 7001


def test_explicit_file_beats_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SQUALL_CONFIG_FILE", str(write_toml(tmp_path / "env.toml", "port = 7001\n")))
    assert Settings.load(write_toml(tmp_path / "arg.toml", "port = 7002\n")).port == 7002


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Settings.load(tmp_path / "absent.toml")


def test_malformed_toml_is_an_error(tmp_path: Path) -> None:
    import tomllib

    with pytest.raises(tomllib.TOMLDecodeError):
        Settings.load(write_toml(tmp_path / "bad.toml", "port = \n"))


# ================================================================== priority


def test_priority_defaults_file_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_toml(
        tmp_path / "p.toml",
        'host = "file-host"\nport = 7000\nregion = "eu-west-1"\naccount_id = "111111111111"\n',
    )
    monkeypatch.setenv("SQUALL_PORT", "8000")
    monkeypatch.setenv("SQUALL_REGION", "eu-central-1")
    s = Settings.load(path, region="ap-northeast-1", host=None)
    assert s.host == "file-host"  # file (None override ignored)
    assert s.port == 8000  # env beats file
    assert s.region == "ap-northeast-1"  # override beats env and file
    assert s.account_id == "111111111111"  # file beats default
    assert s.isolation == "auto"  # default


def test_env_beats_file_even_when_env_equals_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Setting SQUALL_PORT to the default value is still an explicit choice.
    monkeypatch.setenv("SQUALL_PORT", "9000")
    assert Settings.load(write_toml(tmp_path / "p.toml", "port = 7000\n")).port == 9000


def test_unset_env_does_not_mask_file_values(tmp_path: Path) -> None:
    # Defaults from the environment pass must not count as "set" and clobber the file.
    path = write_toml(tmp_path / "p.toml", f'port = 7000\ndata_dir = "{tmp_path / "d"}"\n')
    s = Settings.load(path)
    assert s.port == 7000
    assert s.data_dir == tmp_path / "d"


def test_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUALL_PORT", "8000")
    assert Settings.load(port=0).port == 0
    assert Settings.load(port=None).port == 8000


def test_none_overrides_are_ignored(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "p.toml", "port = 7000\n")
    s = Settings.load(path, port=None, host=None, data_dir=None, isolation=None)
    assert (s.port, s.host, s.isolation) == (7000, "127.0.0.1", "auto")


# ================================================================== invalid values


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", -1),
        ("port", 65536),
        ("port", "http"),
        ("account_id", "12345678901"),
        ("account_id", "1234567890123"),
        ("account_id", "12345678901a"),
        ("region", "US-EAST-1"),
        ("region", "us-east"),
        ("region", "useast1"),
        ("region", "us-east-12"),
        ("isolation", "docker"),
        ("isolation", "AUTO"),
        ("keep_alive_seconds", 0),
        ("account_concurrency", 0),
        ("max_log_bytes_per_invocation", 4095),
        ("shutdown_grace_seconds", -1),
    ],
)
def test_invalid_values_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings.load(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [("port", 0), ("port", 65535), ("region", "us-gov-west-1"), ("account_id", "000000000000"), ("isolation", "linux")],
)
def test_boundary_values_accepted(field: str, value: object) -> None:
    assert getattr(Settings.load(**{field: value}), field) == value


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SQUALL_PORT", "70000"),
        ("SQUALL_PORT", "abc"),
        ("SQUALL_ACCOUNT_ID", "42"),
        ("SQUALL_REGION", "mars"),
        ("SQUALL_ISOLATION", "vm"),
    ],
)
def test_invalid_env_values_rejected(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        Settings.load()


def test_invalid_file_values_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings.load(write_toml(tmp_path / "p.toml", 'isolation = "chroot"\n'))
    with pytest.raises(ValidationError):
        Settings.load(write_toml(tmp_path / "q.toml", 'account_id = "abc"\n'))


# ================================================================== database


def test_database_defaults_to_sqlite_under_data_dir(tmp_path: Path) -> None:
    s = Settings.load(data_dir=tmp_path / "dd")
    assert s.database == f"sqlite:///{tmp_path / 'dd' / 'squall.db'}"
    assert s.database.startswith("sqlite:////")  # absolute path: four slashes


def test_database_follows_env_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SQUALL_DATA_DIR", str(tmp_path / "envdata"))
    assert Settings.load().database == f"sqlite:///{tmp_path / 'envdata' / 'squall.db'}"


def test_explicit_database_url_wins(tmp_path: Path) -> None:
    url = "postgresql+psycopg://squall:pw@db:5432/squall"
    s = Settings.load(data_dir=tmp_path, database_url=url)
    assert s.database == url
