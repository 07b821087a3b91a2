"""Ctrl-C (SIGINT), ``kill`` (SIGTERM) and a closed terminal (SIGHUP) all end rnncli the same
way: the code running is interrupted with :class:`Interrupted`, every ``finally`` and ``with``
on the way out removes what it made, and the program exits 128 + the signal's number
(130, 143, 129) with one line on stderr.

Only the command line calls :func:`install`; the library never changes signal handlers. What
the library does instead works with or without them:

- :func:`deferred` holds a signal back for a few lines (create a temporary file *and*
  :func:`track` it), so that no moment exists in which it is made but nobody knows it;
- :func:`track` records temporary files and folders; :func:`remove_tracked` (the command
  line on its way out, and at exit) removes any a ``finally`` did not get to;
- :func:`checkpoint` marks the places tests interrupt: with ``RNNCLI_CHECKPOINTS`` set,
  each prints ``rnncli: checkpoint NAME`` on stderr, and a name listed in it
  (``RNNCLI_CHECKPOINTS=part``) also waits there for a signal. Tests wait for that line
  instead of guessing with sleeps.

Stdlib only: it is imported before anything else so that a signal during the imports is
handled too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import sys
import time

HANDLED = {signal.SIGINT: "interrupted"}
for _name, _word in (("SIGTERM", "terminated"), ("SIGHUP", "hangup")):
    if hasattr(signal, _name):  # (Windows has no SIGHUP)
        HANDLED[getattr(signal, _name)] = _word


class Interrupted(KeyboardInterrupt):
    """A signal asked rnncli to stop. A KeyboardInterrupt, so that code that already cleans
    up after Ctrl-C does the same after ``kill``."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def signal_of(exc: BaseException) -> int:
    """The signal behind ``exc`` (a plain KeyboardInterrupt is Ctrl-C)."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_code(exc: BaseException) -> int:
    """128 + the signal's number, as a shell reports a process a signal ended."""
    return 128 + int(signal_of(exc))


def describe(exc: BaseException) -> str:
    """``interrupted``, ``terminated`` or ``hangup``."""
    return HANDLED.get(signal_of(exc), "interrupted")


# ------------------------------------------------------------------- the handler

_state = {"depth": 0, "pending": None, "stopping": False}


def _handler(signum, _frame):
    if _state["stopping"]:  # cleaning up after the first: a second must not cut that short
        return
    if _state["depth"]:
        _state["pending"] = _state["pending"] or signum
        return
    _state["stopping"] = True
    raise Interrupted(signum)


def install():
    """Handle SIGINT, SIGTERM and SIGHUP by raising :class:`Interrupted` in the main thread.
    A signal that was ignored when rnncli started (``nohup``, a background job) stays
    ignored. Call it from the main thread, once; again is harmless."""
    for signum in HANDLED:
        try:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue
            signal.signal(signum, _handler)
        except (OSError, ValueError):  # not the main thread, or not settable here
            pass


def _raise_pending():
    if not _state["depth"] and _state["pending"] is not None and not _state["stopping"]:
        signum, _state["pending"] = _state["pending"], None
        _state["stopping"] = True
        raise Interrupted(signum)


@contextlib.contextmanager
def deferred():
    """Hold SIGINT, SIGTERM and SIGHUP back for the block; one that came in takes effect
    when the outermost such block ends."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        _raise_pending()


@contextlib.contextmanager
def interruptible():
    """The opposite, inside a :func:`deferred` block: signals act at once again (one held
    back so far acts on entering)."""
    depth, _state["depth"] = _state["depth"], 0
    try:
        _raise_pending()
        yield
    finally:
        _state["depth"] = depth


def reset():
    """Forget a signal handled or held back (for tests that raise one in-process)."""
    _state.update(depth=0, pending=None, stopping=False)


# ------------------------------------------------------------------- temporary files

_tracked: dict = {}  # path -> pid that made it (a forked child must not remove them)


def track(path):
    """Remember a temporary file or folder until :func:`untrack`; create it and call this
    inside one :func:`deferred` block."""
    _tracked[os.fspath(path)] = os.getpid()


def untrack(path):
    _tracked.pop(os.fspath(path), None)


def remove_tracked():
    """Remove every tracked path this process made (what a ``finally`` did not get to)."""
    for path, pid in list(_tracked.items()):
        if pid != os.getpid():
            continue
        _tracked.pop(path, None)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


atexit.register(remove_tracked)


# ------------------------------------------------------------------- checkpoints

CHECKPOINTS_ENV = "RNNCLI_CHECKPOINTS"


def checkpoint(name: str):
    """A named moment tests can wait for (see the module's docstring); nothing without
    ``RNNCLI_CHECKPOINTS``."""
    wanted = os.environ.get(CHECKPOINTS_ENV)
    if not wanted:
        return
    with contextlib.suppress(OSError):
        os.write(2, f"rnncli: checkpoint {name}\n".encode())
    if name in (w.strip() for w in wanted.split(",")):
        # Wait for a signal: the handler raises out of the sleep (a held-back one ends the
        # wait, and takes effect where it is held back).
        while _state["pending"] is None:
            time.sleep(0.05)


# ------------------------------------------------------------------- the last line


def stop(exc: BaseException):
    """Remove tracked temporary files, print the one line for ``exc`` and exit 128 + its
    signal (for the entry point, before the command line's own handling is loaded)."""
    remove_tracked()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"rnncli: {describe(exc)}\n")
        sys.stderr.flush()
    sys.exit(exit_code(exc))
