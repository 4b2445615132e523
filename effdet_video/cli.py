"""The `effdet-video` command line.

Subcommands live in `effdet_video/commands/<name>.py`, each exposing a click command named `command`;
COMMANDS lists the names, and a module that does not exist (yet) is simply not offered. Without a
subcommand, `effdet-video INPUT -o OUTPUT` means `effdet-video run INPUT -o OUTPUT`.
Errors: UserError -> one line, exit 2; Ctrl-C/SIGTERM -> exit 130/143; anything else -> one line
'error: ...', exit 1 (a traceback with --debug).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback

import click

from effdet_video import __version__
from effdet_video.commands.common import CliState, debug_option
from effdet_video.core.control import Interrupted
from effdet_video.errors import UserError

COMMANDS = ("run", "live", "batch", "bench", "demo", "train")
DEFAULT_COMMAND = "run"
GROUP_FLAGS = ("--debug", "--version", "--help", "-h")  # options of the group itself, taking no value


def _module_name(name: str) -> str:
    return f"effdet_video.commands.{name}"


class CommandGroup(click.Group):
    """Lazily imported subcommands, and `run` as the implied command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if importlib.util.find_spec(_module_name(name)) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.list_commands(ctx):
            return None
        return importlib.import_module(_module_name(cmd_name)).command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Insert `run` where the subcommand name would be, when what stands there is not a command."""
        position = 0
        while position < len(args) and args[position] in GROUP_FLAGS:
            position += 1
        if position < len(args) and args[position] not in self.list_commands(ctx):
            args = [*args[:position], DEFAULT_COMMAND, *args[position:]]
        return super().parse_args(ctx, args)


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="effdet-video")
@debug_option
def cli() -> None:
    """Streaming EfficientDet object detection for videos.

    \b
    effdet-video INPUT -o OUTPUT      annotate a video (same as `effdet-video run ...`)
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `effdet-video` script; exits with the codes described above."""
    CliState.debug = False
    try:
        # Without standalone mode click hands back `ctx.exit(code)` as the return value.
        returned = cli.main(args=argv, prog_name="effdet-video", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        _fail("interrupted", 130)
    except UserError as error:
        _fail(f"error: {error}", error.exit_code)
    except Interrupted as stop:
        _fail(f"{stop}; no output written", stop.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; no output written", 130)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if CliState.debug:
            traceback.print_exc()
        _fail(f"error: {type(error).__name__}: {error}", 1)
    sys.exit(returned if isinstance(returned, int) else 0)


def _fail(message: str, code: int) -> None:
    click.echo(" ".join(message.split("\n")), err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
