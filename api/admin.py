"""Operators' command line for accounts and keys.

    python -m api.admin create-user EMAIL [--password-stdin]
    python -m api.admin create-key EMAIL [--name NAME]      prints the key once
    python -m api.admin revoke-key KEY_ID
    python -m api.admin set-limits EMAIL [--uploads-per-minute N] [--max-active-jobs N]
                                   [--bytes-per-day N]      per-user quotas ("default" resets)
    python -m api.admin list-users                          users with their keys

It uses the same V2M_* settings (database URL) as the API and applies migrations first.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from sqlmodel import Session, select

from shared import users
from shared.config import get_settings
from shared.db import make_engine, migrate
from shared.errors import AppError
from shared.models import ApiKey, User

_UNCHANGED = object()


def _limit(text: str) -> int | None:
    """A positive whole number, or 'default' to fall back to the settings' default."""
    if text == "default":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("limits are whole numbers of at least 1, or 'default'")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create_user = sub.add_parser("create-user", help="create an account")
    create_user.add_argument("email")
    create_user.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    create_user.add_argument("--no-password", action="store_true", help="API keys only, no login")
    create_key = sub.add_parser("create-key", help="create an API key (printed once)")
    create_key.add_argument("email")
    create_key.add_argument("--name", default="default")
    revoke = sub.add_parser("revoke-key", help="revoke an API key by id")
    revoke.add_argument("key_id")
    limits = sub.add_parser("set-limits", help="set a user's quotas (or 'default')")
    limits.add_argument("email")
    for flag in ("--uploads-per-minute", "--max-active-jobs", "--bytes-per-day"):
        limits.add_argument(flag, type=_limit, default=_UNCHANGED)
    sub.add_parser("list-users", help="list accounts and their keys")
    args = parser.parse_args(argv)

    engine = make_engine(get_settings())
    migrate(engine)
    try:
        with Session(engine, expire_on_commit=False) as session:
            if args.command == "create-user":
                password = None
                if args.password_stdin:
                    password = sys.stdin.readline().rstrip("\n")
                elif not args.no_password:
                    password = getpass.getpass("Password: ")
                if password is not None and len(password) < 8:
                    print("error: the password must have at least 8 characters", file=sys.stderr)
                    return 2
                user = users.create_user(session=session, email=args.email, password=password)
                print(f"created user {user.email} ({user.id})")
            elif args.command == "create-key":
                user = users.require_user(session=session, email=args.email)
                record, key = users.create_api_key(session=session, user=user, name=args.name)
                print(f"key id {record.id} for {user.email} ({record.name}); shown only now:")
                print(key)
            elif args.command == "set-limits":
                user = users.require_user(session=session, email=args.email)
                for field in ("uploads_per_minute", "max_active_jobs", "bytes_per_day"):
                    value = getattr(args, field)
                    if value is not _UNCHANGED:
                        setattr(user, field, value)
                session.add(user)
                session.commit()
                print(
                    f"limits for {user.email}: uploads/minute={user.uploads_per_minute or 'default'} "
                    f"active jobs={user.max_active_jobs or 'default'} bytes/day={user.bytes_per_day or 'default'}"
                )
            elif args.command == "revoke-key":
                record = users.revoke_api_key(session=session, key_id=args.key_id)
                print(f"revoked key {record.id} ({record.name})")
            else:
                for user in session.exec(select(User).order_by(User.email)).all():
                    print(f"{user.email}  id={user.id}  active={user.is_active}")
                    keys = session.exec(select(ApiKey).where(ApiKey.user_id == user.id)).all()
                    for api_key in keys:
                        state = (
                            "revoked"
                            if api_key.revoked_at
                            else f"last used {api_key.last_used_at or 'never'}"
                        )
                        print(f"    key {api_key.id}  {api_key.name}  {api_key.prefix}…  {state}")
        return 0
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
