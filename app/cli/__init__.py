"""The `prunekit` command line: serve, chat, proxy, the methods' faces, bench, eval and train.

Heavy modules (torch, transformers, llama.cpp) are imported inside the commands, so `--help` and
argument errors answer at once. Every known failure ends with a one-line `prunekit: error: ...`
on stderr and a non-zero exit code, never a traceback. Each command group lives in its own module;
importing them registers their commands on `app`.
"""

from __future__ import annotations

import logging
import sys

import typer

from prunekit.app.cli import agp, bench, chat, evals, faces, proxy, train  # noqa: F401  (registers the commands)
from prunekit.app.cli.common import UsageError, app, stderr
from prunekit.decoding.errors import PrunekitError

__all__ = ["app", "main"]


def _fail_line(message: str) -> None:
    """One unwrapped line on stderr, easy to read and to grep."""
    print(f"prunekit: error: {' '.join(message.split())}", file=sys.stderr)


def main() -> None:
    """Console entry point: one-line errors, non-zero exit codes."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        message = exc.format_message()  # empty when the help was shown for a bare command group
        if message:
            _fail_line(message)
        sys.exit(2)
    except typer.Abort:
        stderr.print("prunekit: aborted")
        sys.exit(130)
    except PrunekitError as exc:
        _fail_line(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
