"""What portal-cli exits with, the error that carries it, and the command
group that turns every failure into one line on stderr and that code."""

from __future__ import annotations

import sys
from enum import IntEnum

import typer
from typer.core import TyperGroup

from portal.cli import output


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # anything else: the portal unreachable, a server error, refused data
    USAGE = 2  # a wrong command line, or a name that matches several things
    NOT_FOUND = 3  # no such (visible) folder or connection
    REFUSED = 4  # no or a refused key (401), not allowed (403), read-only mode, 409
    UNHEALTHY = 5  # the check failed, or the connection is not healthy


class CliError(Exception):
    """Ends the command: its message on one line of stderr, its exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.ERROR):
        super().__init__(" ".join(str(message).split()))  # one line, whatever it held
        self.code = code


def exit_code_for(status: int) -> ExitCode:
    """The exit code for an HTTP error status of the API."""
    if status == 404:
        return ExitCode.NOT_FOUND
    if status in (401, 403, 409):
        return ExitCode.REFUSED
    return ExitCode.ERROR


class PortalGroup(TyperGroup):
    """The command group, ending every run the same way, from the console
    script or a test runner: a one-line error on stderr and the exit code it
    means, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            returned = super().main(
                args=args,
                prog_name=prog_name or "portal-cli",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except CliError as failure:
            output.error(str(failure))
            sys.exit(failure.code)
        except typer.TyperException as failure:  # typer's usage errors among them
            message = failure.format_message()
            code = getattr(failure, "exit_code", ExitCode.ERROR)
            context = getattr(failure, "ctx", None)
            if code == ExitCode.USAGE and context is not None:
                message += f" (see {context.command_path} --help)"
            output.error(message)
            sys.exit(code)
        except typer.Abort:
            output.error("Aborted.")
            sys.exit(ExitCode.ERROR)
        except Exception as failure:  # a bug: still one line, and no traceback
            output.error(f"Unexpected {type(failure).__name__}: {failure}")
            sys.exit(ExitCode.ERROR)
        sys.exit(returned if isinstance(returned, int) else ExitCode.OK)
