"""``python -m rnncli`` and the ``rnncli`` command: signals are handled from here on, before
the command line (click, rich, numpy) is imported, so that Ctrl-C or ``kill`` at any moment
ends with one line and exit 128 + the signal (rnncli/signals.py)."""

from . import signals


def main():
    signals.install()
    try:
        signals.checkpoint("started")
        with signals.deferred():  # an import cut half-way would print a traceback
            from .cli import main as run
    except KeyboardInterrupt as e:
        signals.stop(e)
    run()


if __name__ == "__main__":
    main()
