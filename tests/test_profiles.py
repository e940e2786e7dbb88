"""Profiles: ``[profiles.NAME]`` in config.toml, the lowest layer below keywords and the environment."""

from __future__ import annotations

import os
import warnings

import labelport as lp
import pytest

LABELPORT_VARS = [k for k in os.environ if k.startswith("LABELPORT_")]


@pytest.fixture
def sb():
    with lp.sandbox.start("sama") as s:
        yield s


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for k in LABELPORT_VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return monkeypatch


def write(path, text, mode=0o600):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_profile_in_xdg_config_home_gives_vendor_and_everything(sb, clean_env, tmp_path):
    clean_env.setenv("MY_SAMA_KEY", sb.credentials["api_key"])
    write(
        tmp_path / "xdg" / "labelport" / "config.toml",
        f'[profiles.dev]\nvendor = "sama"\nproject = "{sb.project}"\nbase_url = "{sb.url}"\n'
        'api_key_env = "MY_SAMA_KEY"\nkey_field = "my_key"\n',
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = lp.Client(profile="dev")
    assert (client.vendor, client.project, client.base_url) == ("sama", sb.project, sb.url)
    batch = client.create_batch("from-a-profile")
    batch.upload([{"image_url": "https://x/1.jpg", "id": "a"}], key="id").wait(timeout=30)
    assert batch.status()["total"] == 1


def test_precedence_keyword_environment_profile(sb, clean_env, tmp_path):
    config = write(
        tmp_path / "elsewhere.toml",
        f'[profiles.p]\nvendor = "sama"\nproject = "999"\nbase_url = "{sb.url}"\napi_key = "wrong"\n',
    )
    clean_env.setenv("LABELPORT_CONFIG", str(config))
    clean_env.setenv("LABELPORT_PROFILE", "p")
    # The profile's wrong key and project lose to the environment, the environment to keywords.
    clean_env.setenv("LABELPORT_SAMA_API_KEY", sb.credentials["api_key"])
    clean_env.setenv("LABELPORT_SAMA_PROJECT", "555")
    assert lp.Client("sama").project == "555"
    client = lp.Client("sama", project=sb.project)
    assert client.project == sb.project
    client.create_batch("precedence")  # authenticates: the environment's key won over the profile's
    clean_env.delenv("LABELPORT_SAMA_API_KEY")
    with pytest.raises(lp.AuthError):
        lp.Client("sama", project=sb.project).create_batch("with-the-profile-key")
    lp.Client("sama", project=sb.project, api_key=sb.credentials["api_key"]).create_batch("kw")


def test_async_client_takes_a_profile(sb, clean_env, tmp_path):
    config = write(tmp_path / "c.toml", f'[profiles.a]\nvendor = "sama"\nproject = "{sb.project}"\n')
    clean_env.setenv("LABELPORT_CONFIG", str(config))
    client = lp.AsyncClient(profile="a", base_url=sb.url, **sb.credentials)
    assert (client.vendor, client.project) == ("sama", sb.project)


def test_file_readable_by_others_holding_a_secret_warns(clean_env, tmp_path):
    config = write(
        tmp_path / "open.toml",
        '[profiles.p]\nvendor = "sama"\nproject = "1"\napi_key = "do-not-show-me"\n',
        mode=0o644,
    )
    clean_env.setenv("LABELPORT_CONFIG", str(config))
    with pytest.warns(UserWarning, match="chmod 600") as record:
        lp.Client(profile="p")
    assert str(config) in str(record[0].message)
    assert "do-not-show-me" not in str(record[0].message)
    os.chmod(config, 0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lp.Client(profile="p")


@pytest.mark.parametrize(
    ("text", "kwargs", "words"),
    [
        ('[profiles.p]\nvendor = "sama"\n', {"profile": "nope"}, ["nope", "p"]),
        ('[profiles.p]\nvendor = "sama"\nproject = \n', {"profile": "p"}, ["line 3"]),
        (
            '[profiles.p]\nvendor = "sama"\nproject = "1"\n',
            {"vendor": "alegion", "profile": "p"},
            ['"sama"', "alegion"],
        ),
        ('[profiles.p]\nproject = "1"\n', {"profile": "p"}, ["no vendor"]),
        ('[profiles.p]\nvendor = "sama"\nproject = "1"\npassword = "x"\n', {"profile": "p"}, ["password"]),
    ],
    ids=["unknown profile", "malformed toml", "vendor disagrees", "no vendor", "unknown key"],
)
def test_profile_errors_are_invalid_input_naming_the_file(clean_env, tmp_path, text, kwargs, words):
    config = write(tmp_path / "config.toml", text)
    clean_env.setenv("LABELPORT_CONFIG", str(config))
    clean_env.setenv("LABELPORT_SAMA_API_KEY", "k")
    with pytest.raises(lp.InvalidInput) as info:
        lp.Client(**kwargs)
    message = str(info.value)
    for word in [*words, str(config)] if words != ["no vendor"] else words:
        assert word in message, message


def test_missing_profile_file_is_named(clean_env, tmp_path):
    with pytest.raises(lp.InvalidInput, match="does not exist") as info:
        lp.Client("sama", profile="p")
    assert str(tmp_path / "xdg" / "labelport" / "config.toml") in str(info.value)


def test_no_vendor_and_no_profile(clean_env):
    with pytest.raises(lp.InvalidInput, match="no vendor"):
        lp.Client()
