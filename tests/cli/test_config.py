"""Where v2m finds the API and its credentials, and the exit codes of usage errors."""

from __future__ import annotations

import ast
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.config import Credentials, config_path, resolve, save_login, save_tokens
from cli.errors import ConfigError


def test_login_file_is_private_and_holds_no_password(config_home: Path) -> None:
    path = save_login("http://api.test/", Credentials(access_token="a", refresh_token="r"))
    assert path == config_home / "v2m" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "password" not in path.read_text()
    settings = resolve(None, None)
    assert settings.api_url == "http://api.test"
    assert settings.credentials == Credentials(access_token="a", refresh_token="r")


def test_options_beat_the_login_file() -> None:
    save_login("http://api.test", Credentials(api_key="v2m_from_file"))
    settings = resolve("http://other.test", "v2m_from_option")
    assert (settings.api_url, settings.credentials.api_key) == (
        "http://other.test",
        "v2m_from_option",
    )
    assert resolve(None, "v2m_from_option").api_url == "http://api.test"


def test_the_login_file_is_not_sent_to_another_api() -> None:
    save_login("http://api.test", Credentials(api_key="v2m_from_file"))
    with pytest.raises(ConfigError) as caught:
        resolve("http://elsewhere.test", None)
    assert "v2m login" in caught.value.message


def test_refreshed_tokens_replace_the_stored_ones() -> None:
    save_login("http://api.test", Credentials(access_token="a1", refresh_token="r1"))
    save_tokens("http://api.test", "a2", "r2")
    assert resolve(None, None).credentials == Credentials(access_token="a2", refresh_token="r2")
    assert stat.S_IMODE(config_path().stat().st_mode) == 0o600


def test_a_broken_config_file_is_a_configuration_error(config_home: Path) -> None:
    path = config_home / "v2m" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError) as caught:
        resolve(None, None)
    assert str(path) in caught.value.message and caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["convert", "{video}", "--bitrate", "128", "--quality", "2"], "not both"),
        (["convert", "{video}"], "No credentials"),
        (["convert", "{missing}"], "does not exist"),
        (["convert", "{video}", "{other}", "-o", "{out}", "--api-key", "v2m_x"], "both be saved"),
    ],
)
def test_usage_and_configuration_errors_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "clip.mp4").write_bytes(b"x")
    (tmp_path / "clip.mov").write_bytes(b"y")
    names = {
        "video": str(tmp_path / "a" / "clip.mp4"),
        "other": str(tmp_path / "clip.mov"),
        "missing": str(tmp_path / "nope.mp4"),
        "out": str(tmp_path / "out"),
    }
    result = CliRunner().invoke(app, [a.format(**names) for a in args])
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())


def test_version_is_printed() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("v2m ")


def test_the_client_imports_nothing_of_the_server() -> None:
    """v2m is a client of the public API only: no module of api, worker or shared."""
    root = Path(__file__).resolve().parents[2] / "cli"
    imported: set[str] = set()
    for module in root.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    assert "cli" in imported and "httpx" in imported  # the walk sees imports
    assert not imported & {"api", "worker", "shared", "notifier"}
