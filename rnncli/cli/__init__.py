"""The command line: parse options, call the library, print what it returns.

One module a family of commands (inspect: forward, trace; describe: summary; files:
export, convert); options shared by several commands are bundles in options.py.
Heavy imports (numpy, h5py, rich) happen inside the commands so that ``rnncli --help``
starts fast.
"""

from . import describe, files, grad, inspect, report  # noqa: F401  (they register commands)
from .app import cli, main

__all__ = ["cli", "main"]
