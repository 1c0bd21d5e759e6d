from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import SettingsError, load_settings, setting_docs


def test_defaults() -> None:
    s = load_settings({}, env_file=None)
    assert s.command_prefix == "!" and s.language == "en-US" and s.data_dir == Path("./data")
    assert s.sandbox and s.discord_token is None
    assert s.stt_engines == ("google", "whisper", "sphinx")
    assert s.max_audio_mb == 25 and s.max_upload_mb == 10


def test_env_file_is_read_and_real_environment_wins(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("COMMAND_PREFIX=?\nLANGUAGE=fr-FR\nDISCORD_TOKEN=abc.def\n")
    s = load_settings({"LANGUAGE": "de-DE"}, env_file=env)
    assert s.command_prefix == "?" and s.language == "de-DE" and not s.sandbox


def test_each_bad_value_gets_one_line_naming_it() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(
            {
                "MAX_AUDIO_MB": "lots",
                "STT_ENGINES": "google,siri",
                "LOG_LEVEL": "LOUD",
                "BOT_OWNER_IDS": "12,abc",
                "MAX_UPLOAD_MB": "0",
            },
            env_file=None,
        )
    problems = info.value.problems
    assert len(problems) == 5
    assert any(p.startswith("BOT_OWNER_IDS: must be a comma-separated") for p in problems)
    assert any(p.startswith("MAX_AUDIO_MB: is not a number") for p in problems)
    assert any("unknown engine 'siri'" in p for p in problems)


def test_token_is_never_shown() -> None:
    s = load_settings({"DISCORD_TOKEN": "super-secret-token"}, env_file=None)
    assert "super-secret-token" not in repr(s) and "super-secret-token" not in str(s)


def test_env_example_documents_every_setting() -> None:
    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    for name, _default, _doc in setting_docs():
        assert f"{name}=" in example, name


def test_limits_have_defaults_and_old_cooldown_settings_are_ignored(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "SAY_COOLDOWN_SECONDS=3\nTRANSCRIBE_COOLDOWN_SECONDS=10\nTRAIN_COOLDOWN_SECONDS=30\n"
    )
    s = load_settings({}, env_file=env)
    assert (s.say_burst, s.say_refill_seconds, s.say_queue_max) == (5, 2.0, 20)
    assert (s.transcribe_budget_seconds, s.transcribe_window_seconds) == (1800, 3600)
    assert not hasattr(s, "say_cooldown_seconds")


def test_database_url_picks_postgresql_and_never_shows_its_password() -> None:
    assert load_settings({}, env_file=None).database_url is None  # SQLite in DATA_DIR
    url = "postgresql://bot:s3cret@db.internal:5432/bot"
    s = load_settings({"DATABASE_URL": f" {url} "}, env_file=None)
    assert s.database_url == url
    assert "s3cret" not in repr(s) and "postgresql://bot:***@db.internal:5432/bot" in repr(s)
    with pytest.raises(SettingsError) as info:
        load_settings({"DATABASE_URL": "mysql://x:y@h/db"}, env_file=None)
    [problem] = info.value.problems
    assert problem.startswith("DATABASE_URL: must start with postgresql://")


def test_shards_default_to_every_shard_in_one_process() -> None:
    s = load_settings({}, env_file=None)
    assert (s.shard_count, s.shard_ids, s.redis_url) == (None, None, None)


@pytest.mark.parametrize(
    ("raw", "ids"),
    [("0-3", (0, 1, 2, 3)), ("0,2", (0, 2)), ("5", (5,)), (" 3, 0-1 ", (0, 1, 3)), ("2-2", (2,))],
)
def test_shard_ids_take_ranges_lists_and_single_ids(raw: str, ids: tuple[int, ...]) -> None:
    s = load_settings({"SHARD_COUNT": "8", "SHARD_IDS": raw}, env_file=None)
    assert s.shard_count == 8 and s.shard_ids == ids


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SHARD_IDS": "0-1"}, "SHARD_IDS: needs SHARD_COUNT"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "0-2"}, "SHARD_IDS: shard 2 does not exist with"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "3-1"}, "SHARD_IDS: the range 3-1 runs backwards"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0-2,1"}, "SHARD_IDS: names shard 1 twice"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "one"}, "SHARD_IDS: must be shard ids like"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "-1"}, "SHARD_IDS: must be shard ids like"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0,,1"}, "SHARD_IDS: must be shard ids like"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT: must be between 1 and"),
        ({"SHARD_COUNT": "two"}, "SHARD_COUNT: is not a number"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL: must start with redis://"),
    ],
)
def test_bad_shard_settings_get_one_clear_line(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env, env_file=None)
    [reported] = info.value.problems
    assert reported.startswith(problem), reported


def test_redis_url_never_shows_its_password() -> None:
    s = load_settings({"REDIS_URL": "redis://:hunter2@cache.internal:6379/0"}, env_file=None)
    assert s.redis_url == "redis://:hunter2@cache.internal:6379/0"
    assert "hunter2" not in repr(s) and "redis://:***@cache.internal:6379/0" in repr(s)


def test_metrics_are_off_unless_a_port_is_set() -> None:
    s = load_settings({}, env_file=None)
    assert (s.metrics_port, s.metrics_host) == (None, "127.0.0.1")
    s = load_settings({"METRICS_PORT": " 9101 ", "METRICS_HOST": "0.0.0.0"}, env_file=None)
    assert (s.metrics_port, s.metrics_host) == (9101, "0.0.0.0")
    with pytest.raises(SettingsError) as info:
        load_settings({"METRICS_PORT": "70000", "METRICS_HOST": "a b"}, env_file=None)
    assert info.value.problems == [
        "METRICS_PORT: must be between 1 and 65535 (got '70000')",
        "METRICS_HOST: must be an address such as 127.0.0.1 or 0.0.0.0 (got 'a b')",
    ]
