"""`v2m`: the command-line client of the video2mp3 API.

A client of the public HTTP API only (httpx): it imports nothing of `api`, `worker` or
`shared`, so it could ship on its own.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("video2mp3")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
