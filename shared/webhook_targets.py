"""Where webhooks may go: http(s) URLs whose host resolves only to public addresses.

Checked when a URL is accepted (job creation, account settings) and again right before
each delivery, because DNS can change in between. Loopback, private, link-local (which
holds cloud metadata at 169.254.169.254), shared, reserved and multicast addresses are
refused unless `V2M_WEBHOOK_ALLOW_PRIVATE_TARGETS` is set (development only; production
settings refuse it).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from shared.errors import InvalidRequestError

CODE = "webhook_url_not_allowed"


class WebhookTargetError(InvalidRequestError):
    code = CODE


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to; WebhookTargetError if it resolves to none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookTargetError(f"The webhook host {host!r} does not resolve.") from exc
    return sorted({str(info[4][0]) for info in infos})


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """The URL if it may receive webhooks, else WebhookTargetError (422)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookTargetError("A webhook URL must be an http:// or https:// URL with a host.")
    if parts.username or parts.password:
        raise WebhookTargetError("A webhook URL must not carry a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookTargetError("The webhook URL's port is not a number.") from exc
    if allow_private:
        return url
    addresses = resolve(parts.hostname, port)
    refused = [a for a in addresses if not _is_public(a)]
    if refused:
        raise WebhookTargetError(
            f"The webhook host {parts.hostname!r} resolves to a non-public address "
            f"({refused[0]}); webhooks go only to public addresses."
        )
    return url
