"""The Authorization header of every API request: an API key, or an access token that is
refreshed (POST /v1/auth/refresh) the first time the API answers 401 to it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator

import httpx

from cli.config import Credentials

TokenSaver = Callable[[str, str], None]


class BearerAuth(httpx.Auth):
    """httpx's custom-auth flow: send, and on a 401 to an access token refresh it once and
    send again. The new pair goes to ``on_refresh`` (the config file keeps it)."""

    def __init__(self, credentials: Credentials, refresh_url: str, on_refresh: TokenSaver) -> None:
        self._api_key = credentials.api_key
        self._access = credentials.access_token
        self._refresh = credentials.refresh_token
        self._refresh_url = refresh_url
        self._on_refresh = on_refresh
        self._lock = threading.Lock()

    def _token(self) -> str:
        return self._api_key or self._access or ""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent = self._token()
        request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code != 401 or self._api_key or not self._refresh:
            return
        with self._lock:
            if self._access == sent:  # no other thread refreshed it meanwhile
                refreshed = yield httpx.Request(
                    "POST", self._refresh_url, json={"refresh_token": self._refresh}
                )
                if refreshed.status_code != 200:
                    return  # the caller sees this 401 and says to log in again
                refreshed.read()
                pair = refreshed.json()
                self._access, self._refresh = pair["access_token"], pair["refresh_token"]
                self._on_refresh(self._access, self._refresh)
        request.headers["Authorization"] = f"Bearer {self._token()}"
        yield request
