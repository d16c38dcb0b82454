"""Compose's variable interpolation, for checks that read Compose files as data.

`${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}`, `${NAME?message}`
and `$$`, as the Compose specification defines them.
"""

from __future__ import annotations

import re

INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")


class MissingVariableError(ValueError):
    """A `${NAME:?}` (or `${NAME?}`) variable has no value."""


def interpolate(text: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = env.get(name)
        empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and empty:
            raise MissingVariableError(f"required variable {name} is missing a value: {arg}")
        if op in (":-", "-") and empty:
            return arg
        return value or ""

    return INTERPOLATION.sub(replace, text.replace("$$", "\0")).replace("\0", "$")


def required_variables(text: str) -> set[str]:
    return {m.group("name") for m in INTERPOLATION.finditer(text) if m.group("op") in (":?", "?")}


def read_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a .env file; comments and blank lines skipped."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env
