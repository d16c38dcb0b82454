"""Secrets out of ffmpeg's and ffprobe's output before it is logged.

Both name their input in errors (``https://…/key?X-Amz-Signature=…: Server returned 403``),
and the input is a presigned URL: anyone holding its query string can read the upload
until it expires. Every URL's query string is cut, and any signing parameter that shows
up on its own (a line cut short, a URL printed in pieces) has its value removed.
"""

from __future__ import annotations

import re

REDACTED = "REDACTED"

# A URL's query: from "?" to the next space or quote.
_URL_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?'\"]*)\?[^\s'\"]*")
# SigV4 and SigV2 parameters, wherever they appear (also percent-encoded "=").
_SIGNING_PARAM = re.compile(
    r"(?i)\b(X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId)"
    r"(=|%3D)[^\s&'\"]*"
)


def redact(text: str) -> str:
    """``text`` with every URL's query string and every signing parameter's value removed."""
    text = _URL_QUERY.sub(rf"\1?{REDACTED}", text)
    return _SIGNING_PARAM.sub(rf"\1\2{REDACTED}", text)
