"""Errors rnncli raises on purpose.

Every expected failure (a bad file, a bad input, an unsupported layer) is an
:class:`RnncliError` whose message is one sentence naming what was wrong and
what was expected. The CLI prints that sentence and exits 1; anything else is a
bug.
"""


class RnncliError(ValueError):
    """Base class of rnncli's own errors."""


class ModelFileError(RnncliError):
    """A model file could not be read or does not describe a usable model."""


class InputDataError(RnncliError):
    """Input data (sequences, initial state) does not fit the model."""


class UnsupportedLayerError(RnncliError):
    """The model holds a layer rnncli cannot compute."""


class UsageError(RnncliError):
    """An option's value can't be used (``--set`` a key no layer has, ...): exit 2."""


class OutputError(RnncliError):
    """A result could not be written."""


def file_error(path, exc: OSError, cls=RnncliError) -> RnncliError:
    """One sentence for an OSError met while opening ``path``."""
    if isinstance(exc, FileNotFoundError):
        return cls(f"{path}: no such file")
    if isinstance(exc, PermissionError):
        return cls(f"{path}: permission denied")
    return cls(f"{path}: cannot be read ({exc.strerror or exc})")


def there_are(n: int, noun: str = "") -> str:
    """``there is 1 array`` / ``there are 7 arrays`` (``there is 1`` without a noun), for
    messages that say how many there are."""
    noun = f" {noun}{'' if n == 1 else 's'}" if noun else ""
    return f"there {'is' if n == 1 else 'are'} {n}{noun}"


def index_range(n: int, what: str = "") -> str:
    """The valid indices of ``n`` things: ``sample 0`` for one, ``sample 0 to 2``."""
    lead = f"{what} " if what else ""
    return f"{lead}0" if n == 1 else f"{lead}0 to {n - 1}"
