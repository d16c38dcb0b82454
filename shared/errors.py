"""Exception tree shared by the API and the worker.

    AppError                      base; carries a machine-readable ``code`` and a sentence
    ├── NotFoundError             a job or upload that does not exist (permanent)
    ├── ConflictError             the request clashes with current state (permanent)
    ├── GoneError                 what the request names has expired (410)
    ├── InvalidRequestError       a value the schema accepts but the service cannot use (422)
    ├── TooLargeError             an upload over the size limit (413)
    ├── UnsupportedTypeError      an upload of a type that is not audio or video (415)
    ├── AuthError                 no, wrong, expired or revoked credentials (401)
    ├── RateLimitError            a per-user limit was reached (429, with Retry-After)
    │   └── BusyError             the process is at a capacity bound (503, with Retry-After)
    ├── StorageError              object storage unreachable or failing (retryable)
    ├── QueueError                RabbitMQ unreachable or refusing a publish (retryable)
    └── TranscodeError            ffprobe/ffmpeg could not produce the MP3
        ├── MediaError            the input itself is unusable (permanent)
        └── TransientTranscodeError  ffmpeg was killed or timed out (retryable)

``retryable`` tells the worker whether another attempt could succeed: the worker retries
retryable errors with backoff and fails the job at once on permanent ones. Library
exceptions (botocore, pika, subprocess) are translated into these at the adapter edge, so
callers never see a library's own exception types.
"""

from __future__ import annotations


class AppError(Exception):
    code: str = "internal_error"
    retryable: bool = False
    status_code: int = 500

    def __init__(self, message: str, *, code: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: extra context for operators' logs only (e.g. ffmpeg's last stderr lines); never
        #: shown to users.
        self.detail = detail
        if code is not None:
            self.code = code


class NotFoundError(AppError):
    code = "not_found"
    status_code = 404


class ConflictError(AppError):
    code = "conflict"
    status_code = 409


class GoneError(AppError):
    code = "gone"
    status_code = 410


class InvalidRequestError(AppError):
    code = "validation_error"
    status_code = 422


class TooLargeError(AppError):
    code = "payload_too_large"
    status_code = 413


class UnsupportedTypeError(AppError):
    code = "unsupported_media_type"
    status_code = 415


class AuthError(AppError):
    code = "unauthenticated"
    status_code = 401


class RateLimitError(AppError):
    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = max(1, retry_after_s)


class BusyError(RateLimitError):
    """Not the caller's limit but the process's: come back shortly (e.g. password hashing
    has all its slots taken)."""

    code = "server_busy"
    status_code = 503


class StorageError(AppError):
    code = "storage_unavailable"
    retryable = True
    status_code = 503


class QueueError(AppError):
    code = "queue_unavailable"
    retryable = True
    status_code = 503


class TranscodeError(AppError):
    code = "transcode_failed"
    status_code = 500


class MediaError(TranscodeError):
    """The input cannot be converted, whatever we retry (no audio, not media, ...)."""

    code = "unsupported_media"
    retryable = False
    status_code = 422


class TransientTranscodeError(TranscodeError):
    code = "transcode_interrupted"
    retryable = True
