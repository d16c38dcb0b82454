"""Credentials: password hashes (argon2), API keys (random, stored as SHA-256), JWTs.

API keys carry 256 bits of randomness, so a fast hash is enough to store them and lets a
key be looked up by its hash; passwords are chosen by people and get argon2. JWTs are
HS256 only: the algorithm is pinned on decode, so `alg: none` and algorithm confusion are
refused.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.config import API_KEY_PREFIX
from shared.errors import AuthError
from shared.models import utcnow

JWT_ALGORITHM = "HS256"
TokenKind = Literal["access", "refresh"]

# argon2id at OWASP's first recommended setting (19 MiB, 2 passes, 1 lane) rather than
# argon2-cffi's default (64 MiB, 3 passes, 4 lanes): an API process hashes at most
# V2M_LOGIN_HASH_CONCURRENCY passwords at once, and that many hashes must fit in the
# container's memory beside the process itself (docs/SECURITY.md). Hashes made with
# other parameters still verify (a hash carries its parameters) and are replaced on the
# next successful login (`password_needs_rehash`).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if not password_hash:
        _hasher.hash(password)  # spend the same time whether or not the account has one
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """Whether a hash was made with other parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


def make_token(*, user_id: str, kind: TokenKind, ttl_s: int, secret: str) -> str:
    now = utcnow()
    claims = {
        "sub": user_id,
        "typ": kind,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def read_token(token: str, *, kind: TokenKind, secret: str) -> str:
    """The user id a valid token of this kind names; AuthError otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[JWT_ALGORITHM], options={"require": ["exp", "sub", "typ"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("The token has expired; log in again.") from exc
    except jwt.PyJWTError as exc:
        raise AuthError("The token is not valid.") from exc
    if claims.get("typ") != kind:
        raise AuthError("That token cannot be used here.")
    return str(claims["sub"])
