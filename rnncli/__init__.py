"""rnncli: look inside Keras SimpleRNN models without Keras.

    >>> import rnncli
    >>> model = rnncli.load_model("sample_weights/seed000_two_units.keras")
    >>> result = model.run(x)            # x: (batch, timesteps, features)
    >>> result.output, result.hidden["simple_rnn"], result.trace("simple_rnn").z

Heavy modules (numpy, h5py) load on first use, so ``rnncli --help`` stays fast.
"""

from importlib import import_module

__all__ = ["load_model", "random_model", "Model", "Result", "Trace", "RnncliError",
           "ModelFileError", "InputDataError", "UnsupportedLayerError", "__version__"]

_LAZY = {
    "load_model": "rnncli.models",
    "random_model": "rnncli.keras.random",
    "Model": "rnncli.core.model",
    "Result": "rnncli.core.result",
    "Trace": "rnncli.core.result",
    "RnncliError": "rnncli.errors",
    "ModelFileError": "rnncli.errors",
    "InputDataError": "rnncli.errors",
    "UnsupportedLayerError": "rnncli.errors",
}


def __getattr__(name):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("rnncli")
        except PackageNotFoundError:
            return "0+unknown"
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rnncli' has no attribute {name!r}")
