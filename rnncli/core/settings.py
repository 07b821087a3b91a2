"""``--set [LAYER.]KEY=VALUE``: change a setting of a model's layers after loading.

A plain ``KEY`` applies to every recurrent layer that has that setting (both directions
of a Bidirectional one); ``LAYER.KEY`` to one layer. A key no layer can change, or a
layer that does not exist, is an error that names what can be set.
"""

from __future__ import annotations

from ..errors import RnncliError, UsageError


def apply_settings(model, values: dict | None):
    """Apply ``values`` ({key: text}) to ``model``'s layers, in place."""
    for key, value in (values or {}).items():
        layer_name, _, name = key.rpartition(".")
        if layer_name:
            layer = next((la for la in model.layers if la.name == layer_name), None)
            if layer is None:
                names = ", ".join(la.name for la in model.layers)
                raise UsageError(f"--set {key}: no layer {layer_name!r}; expected one of: {names}")
            _configure(layer, name, value, key)
            continue
        targets = [la for la in model.recurrent_layers if name in la.settable]
        if not targets:
            can = sorted({k for la in model.recurrent_layers for k in la.settable})
            raise UsageError(
                f"--set {key}: no recurrent layer has a setting {name!r}; they can set "
                f"{', '.join(can) or 'nothing'}, and LAYER.KEY sets one layer")
        for layer in targets:
            _configure(layer, name, value, key)


def _configure(layer, name, value, key):
    try:
        layer.configure(name, value)
    except RnncliError as e:
        msg = str(e)
        raise UsageError(msg if msg.startswith("--set") else f"--set {key}: {msg}") from None
