"""The base of every layer: a name, its Keras config, its weights, and settings a user may
change (``--set KEY=VALUE``)."""

from __future__ import annotations

from ..errors import RnncliError, UsageError
from . import activations


def parse_bool(value) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise RnncliError(f"{value!r} is not true or false")
    return bool(value)


class Layer:
    """A named Keras layer. Subclasses set ``class_name`` and implement ``call``."""

    class_name = "Layer"
    recurrent = False
    settable: tuple = ()  # config keys --set may change

    def __init__(self, name: str, config: dict | None = None):
        self.name = name
        self.config = dict(config or {})

    def weights(self) -> dict:
        """Weights by Keras name, in Keras' order."""
        return {}

    def count_params(self) -> int:
        return int(sum(w.size for w in self.weights().values()))

    def configure(self, key: str, value):
        """Change a setting (``--set``); what can't change is an error naming what can."""
        if key not in self.settable:
            can = ", ".join(self.settable) or "nothing"
            raise UsageError(f"--set {self.name}.{key}: a {self.class_name} layer's {key!r} "
                             f"can't be set; it can set: {can}")
        current = getattr(self, key, None)
        if key == "activation":
            self.activation = activations.normalize(value)
            self._act = activations.get(self.activation, getattr(self, "keras_major", 3))
        elif isinstance(current, bool):
            setattr(self, key, parse_bool(value))
        elif isinstance(current, float):
            setattr(self, key, float(value))
        else:
            setattr(self, key, value)

    def call(self, x, mask=None):
        raise NotImplementedError

    def __repr__(self):
        return f"<{self.class_name} {self.name!r}>"
