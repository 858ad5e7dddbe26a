"""The one way a command reports a user error: one line on stderr, then exit (2 by default)."""

from __future__ import annotations

import sys

import click


def fail(message: str, code: int = 2) -> None:
    click.echo(f"cosinetui: {message}", err=True)
    sys.exit(code)
