"""One email attempt: a text + HTML message built with `email.message.EmailMessage`, sent
with `smtplib` to the SMTP server `V2M_SMTP_URL` names.

    smtp://user:password@host:587     STARTTLS (required), then AUTH when a user is given
    smtps://user:password@host:465    TLS from the start
    smtp://host:25?starttls=false     plain, for a local sink (development, Mailpit)

The message names the file and links to the job on the page (`V2M_PUBLIC_URL`), never to
a presigned URL, which would expire before the mail is read.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from shared.models import JobStatus
from shared.schemas import JobPublic


def job_link(public_url: str, job_id: str) -> str:
    return f"{public_url.rstrip('/')}/#job={job_id}"


def build(*, job: JobPublic, to: str, sender: str, public_url: str) -> EmailMessage:
    name = job.input.filename
    link = job_link(public_url, job.id)
    if job.status == JobStatus.completed:
        subject = f"Your MP3 of {name} is ready"
        line = f"{name} has been converted to MP3."
    else:
        reason = job.error.message if job.error else "an unknown error"
        subject = f"Converting {name} failed"
        line = f"{name} could not be converted: {reason}"
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="video2mp3")
    msg.set_content(f"{line}\n\nSee the job: {link}\n")
    msg.add_alternative(
        f'<p>{html.escape(line)}</p><p><a href="{html.escape(link)}">See the job</a></p>',
        subtype="html",
    )
    return msg


def send(msg: EmailMessage, smtp_url: str, *, timeout_s: float) -> None:
    """Raises smtplib.SMTPException or OSError when the server refuses or cannot be reached."""
    parts = urlsplit(smtp_url)
    host = parts.hostname or "localhost"
    query = parse_qs(parts.query)
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if parts.scheme == "smtps":
        smtp = smtplib.SMTP_SSL(host, parts.port or 465, timeout=timeout_s, context=context)
    elif parts.scheme == "smtp":
        smtp = smtplib.SMTP(host, parts.port or 587, timeout=timeout_s)
    else:
        raise ValueError("V2M_SMTP_URL must start with smtp:// or smtps://")
    with smtp:
        if parts.scheme == "smtp" and query.get("starttls", ["true"])[0] != "false":
            smtp.starttls(context=context)
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(msg)
