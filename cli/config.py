"""Where v2m finds the API and its credentials.

Precedence: `--api-url` / `--api-key`, else `V2M_API_URL` / `V2M_API_KEY` (Typer reads
both into the same options), else the config file `v2m login` writes under the user's
config directory (`typer.get_app_dir`, e.g. ~/.config/v2m/config.json on Linux), mode 0600.

The API has no route that creates an API key for a logged-in user (operators create keys
with `python -m api.admin create-key`), so `v2m login` with email and password stores the
access and refresh tokens the API hands out; `v2m login --api-key` stores a key instead.
The password is never stored.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from cli.errors import ConfigError

DEFAULT_API_URL = "http://127.0.0.1:8000"
APP_NAME = "v2m"


@dataclass(frozen=True)
class Credentials:
    api_key: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None


@dataclass(frozen=True)
class Settings:
    api_url: str
    credentials: Credentials


def config_dir() -> Path:
    return Path(typer.get_app_dir(APP_NAME))


def config_path() -> Path:
    return config_dir() / "config.json"


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} when the file does not exist."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot read {path}: {exc}. Fix or delete it, then run `v2m login`."
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object. Delete it, then run `v2m login`.")
    return data


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` readable by the owner only (0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp makes 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_login(api_url: str, credentials: Credentials) -> Path:
    data: dict[str, Any] = {"api_url": api_url.rstrip("/")}
    data.update({k: v for k, v in vars(credentials).items() if v})
    path = config_path()
    write_private_json(path, data)
    return path


def save_tokens(api_url: str, access_token: str, refresh_token: str) -> None:
    """Keep refreshed tokens, if the config file is still the login for ``api_url``."""
    data = read_json(config_path())
    if data.get("api_url") == api_url.rstrip("/") and "refresh_token" in data:
        data.update(access_token=access_token, refresh_token=refresh_token)
        write_private_json(config_path(), data)


def resolve_url(api_url: str | None) -> str:
    """The option's (or environment's) URL, else the config file's, else the local one."""
    url = (api_url or str(read_json(config_path()).get("api_url") or DEFAULT_API_URL)).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"The API URL {url!r} must start with http:// or https://.")
    return url


def resolve(api_url: str | None, api_key: str | None) -> Settings:
    """Settings from the options (which Typer fills from the environment too), else the file."""
    url = resolve_url(api_url)
    stored = read_json(config_path())
    stored_url = str(stored.get("api_url") or "")
    if api_key:
        return Settings(url, Credentials(api_key=api_key))
    if stored and stored_url == url:
        creds = Credentials(
            api_key=stored.get("api_key"),
            access_token=stored.get("access_token"),
            refresh_token=stored.get("refresh_token"),
        )
        if creds.api_key or creds.access_token:
            return Settings(url, creds)
    raise ConfigError(
        f"No credentials for {url}: run `v2m login`, or pass --api-key (or set V2M_API_KEY)."
    )
