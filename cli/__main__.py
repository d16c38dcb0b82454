"""`python -m cli` and the `v2m` script."""

import sys

from cli.app import app


def main() -> int:
    """Run v2m. Typer exits with the command's code (0, 1, 2 or 130) in standalone mode."""
    app(prog_name="v2m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
