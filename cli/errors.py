"""What can go wrong, as sentences a user can act on, each with the exit code it leads to.

CliError                     exit 1 unless said otherwise
├── ConfigError              exit 2: no API key, a bad config file, bad options
├── AuthenticationError      exit 2: the API refused the credentials (401)
├── UnreachableError         the API or storage did not answer (connection, timeout)
├── ApiError                 the API answered an error: status, code, message
├── StorageError             storage refused an upload or a download
└── CancelledError           Ctrl-C: the work in hand stops (exit 130)
"""

from __future__ import annotations


class CliError(Exception):
    exit_code = 1
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(CliError):
    exit_code = 2
    code = "configuration"


class AuthenticationError(CliError):
    exit_code = 2
    code = "unauthenticated"


class UnreachableError(CliError):
    code = "unreachable"


class ApiError(CliError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class StorageError(CliError):
    code = "storage_error"


class CancelledError(CliError):
    exit_code = 130
    code = "cancelled"
