"""The ``rnncli`` group: errors become one line on stderr, a signal (Ctrl-C, ``kill``, a
closed terminal) exit 128 + its number with one line, a closed pipe a quiet exit 0."""

from __future__ import annotations

import errno
import os
import re
import sys

import click

from .. import signals

EXIT_INTERRUPTED = 130  # Ctrl-C; kill (SIGTERM) 143, a closed terminal (SIGHUP) 129


def note(message: str):
    """A message for the person at the terminal: stderr, never mixed with data."""
    click.echo(f"rnncli: {message}", err=True)


class Failure(click.ClickException):
    """An expected failure: one line on stderr, exit 1."""

    def show(self, file=None):
        click.echo(f"rnncli: error: {self.format_message()}", err=True)


class UsageFailure(Failure):
    """An option's value can't be used: one line on stderr, exit 2 (click's usage code)."""

    exit_code = 2


class RnncliGroup(click.Group):
    """Turns rnncli's own errors into one line on stderr (exit 1, 2 for usage), a signal into
    exit 128 + its number, and a closed pipe into a quiet exit 0. Signals act only while the
    command runs; one during parsing or teardown is held back until then (main)."""

    def invoke(self, ctx):
        from ..errors import RnncliError, UsageError

        def traceback():  # (--traceback is parsed inside super().invoke)
            return bool(ctx.obj and ctx.obj.get("traceback"))

        try:
            with signals.interruptible():
                return super().invoke(ctx)
        except UsageError as e:
            if traceback():
                raise
            raise UsageFailure(str(e)) from None
        except RnncliError as e:
            if traceback():
                raise
            raise Failure(str(e)) from None
        except KeyboardInterrupt as e:  # Ctrl-C, kill or hangup (rnncli/signals.py)
            signals.remove_tracked()
            say(signals.describe(e))
            ctx.exit(signals.exit_code(e))
        except BrokenPipeError:
            quiet_stdout()
            ctx.exit(0)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:  # a bug, unless a write found no room
            if traceback():
                raise
            raise (_no_room(e) or _unexpected(e)) from None


# a write that fails for want of room (a full disk or quota, /dev/full, a file too big) or
# a failing device: what the user can act on, not a bug
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def _no_room(e: Exception) -> Failure | None:
    """One line for a write that failed for want of room (``FULL``): an OSError's errno, or
    the one HDF5 reports inside an h5py RuntimeError ("... errno = 27, error message = 'File
    too large'"); None for anything else."""
    if isinstance(e, OSError):
        code, what = e.errno, e.filename or "the output"  # stdout or a file names none
    else:
        m = re.search(r"errno = (\d+)", str(e)) if isinstance(e, RuntimeError) else None
        code, what = (int(m.group(1)) if m else None), "the output"
    if code not in FULL:
        return None
    quiet_stdout()  # it may be stdout that is full: Python's last flush fails too
    return Failure(f"{what} could not be written ({os.strerror(code)})")


def _unexpected(e: Exception) -> Failure:
    return Failure(f"unexpected error: {type(e).__name__}: {e} (run with --traceback or "
                   f"RNNCLI_TRACEBACK=1 for details, and please report it)")


def say(message: str):
    """note(), for when stderr may be gone (a closed terminal)."""
    try:
        note(message)
    except (OSError, ValueError):
        pass


def quiet_stdout():
    """Point stdout at /dev/null so Python's exit-time flush can't fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@click.group(cls=RnncliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnncli", prog_name="rnncli")
@click.option("--traceback", is_flag=True, envvar="RNNCLI_TRACEBACK",
              help="Show the full Python traceback on errors (for bug reports).")
@click.pass_context
def cli(ctx, traceback):
    """Look inside recurrent networks (Keras SimpleRNN, LSTM, GRU; PyTorch and ONNX
    weights): hidden states per timestep and the arithmetic of every step, without
    the frameworks.

    \b
    Example:
      rnncli forward sample_weights/seed000_two_units.keras -i sample_weights/seed000_input.csv
    """
    ctx.obj = {"traceback": traceback}


def main():
    signals.install()  # (done already when started as rnncli or python -m rnncli)
    try:
        with signals.deferred():  # click would turn a signal while parsing into "Aborted!"
            cli.main(prog_name="rnncli")
    except KeyboardInterrupt as e:
        signals.stop(e)
    except BrokenPipeError:
        quiet_stdout()
        sys.exit(0)
