"""The signature checks docs/WEBHOOKS.md shows, run against deliveries the notifier builds."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from notifier import webhook
from shared.notify_settings import new_secret
from tests.docs.blocks import ROOT
from tests.unit.test_notifier import finished_job

DOC = ROOT / "docs" / "WEBHOOKS.md"
Verify = Callable[[bytes, dict[str, str], str], Any]


def doc_block(name: str) -> str:
    match = re.search(rf"<!-- verify: {name} -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"docs/WEBHOOKS.md has no python block marked verify: {name}"
    return match.group(1)


def verifier(name: str) -> Verify:
    namespace: dict[str, Any] = {}
    exec(compile(doc_block(name), f"docs/WEBHOOKS.md ({name})", "exec"), namespace)
    function: Verify = namespace["verify"]
    return function


def delivery(secrets: list[str]) -> tuple[bytes, dict[str, str]]:
    payload = webhook.body("job.completed", datetime.now(UTC), finished_job())
    return payload.encode(), webhook.headers("msg_1", payload, secrets)


@pytest.mark.parametrize("name", ["standardwebhooks", "hmac"])
def test_doc_block_accepts_a_delivery_signed_with_the_secret(name: str) -> None:
    secret = new_secret()
    body, headers = delivery([secret])
    assert verifier(name)(body, headers, secret)["data"]["id"] == "job-1"


@pytest.mark.parametrize("name", ["standardwebhooks", "hmac"])
def test_doc_block_accepts_either_secret_during_a_rotation(name: str) -> None:
    new, old = new_secret(), new_secret()
    body, headers = delivery([new, old])
    assert verifier(name)(body, headers, old)["type"] == "job.completed"


@pytest.mark.parametrize("name", ["standardwebhooks", "hmac"])
def test_doc_block_refuses_another_secret_or_a_changed_body(name: str) -> None:
    secret = new_secret()
    body, headers = delivery([secret])
    with pytest.raises(Exception, match="(?i)signature"):
        verifier(name)(body, headers, new_secret())
    with pytest.raises(Exception, match="(?i)signature"):
        verifier(name)(body.replace(b"job-1", b"job-2"), headers, secret)


def test_doc_blocks_are_as_short_as_the_doc_says() -> None:
    def lines(name: str) -> int:
        code = [line for line in doc_block(name).splitlines() if line.strip()]
        return len([line for line in code if not line.startswith(("import ", "from "))])

    assert lines("standardwebhooks") <= 4
    assert lines("hmac") <= 10
