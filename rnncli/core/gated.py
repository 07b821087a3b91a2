"""What gated cells (LSTM, GRU) share: a ``recurrent_activation`` for their gates, the
kernel's columns in gate blocks, and traces that read gate by gate.

A gated cell's trace has, per gate block, ``xw``, ``hu``, ``bias``, ``z`` (the gate's
pre-activation) and ``gate`` (its value); its other terms describe the state update
(``state_columns``).
"""

from __future__ import annotations

import numpy as np

from . import activations
from .cell import Cell


class GatedCell(Cell):
    state_columns: tuple = ()
    settable = ("activation", "recurrent_activation")

    def configure(self, key, value):
        if key == "recurrent_activation":
            self.set_recurrent_activation(value)
        else:
            super().configure(key, value)

    def set_recurrent_activation(self, name):
        self.recurrent_activation = activations.normalize(name)
        self.ract = activations.get(self.recurrent_activation, self.keras_major)

    def gate_activation(self, gate) -> str:
        return self.recurrent_activation

    def gate_title(self, gate) -> str:
        return gate

    def config(self):
        return {**super().config(), "recurrent_activation": self.recurrent_activation}

    def backward_trace(self):
        """"gates" where both activations' slopes read off their outputs (tanh, sigmoid,
        linear): the backward pass needs no z then, and a compiled forward loop records
        only what it reads (LSTM: the gates, c_{k-1} being the c state before; GRU: h·U
        and the gates). Else the whole trace ("full")."""
        slopes = {activations.normalize(a) for a in (self.activation, self.recurrent_activation)}
        return "gates" if slopes <= activations.OUTPUT_SLOPES else "full"

    def compiled_backward(self):
        """The compiled backward loop (rnncli/core/fast_backward.py), or None: where the
        forward loop is compiled (LSTM; GRU with reset_after): it reads the gates the
        forward pass recorded."""
        from . import fast_backward

        return fast_backward.gated_backward if self.compiled() is not None else None

    def keras3(self):
        """As Cell.keras3, for the gates too: where Keras 2's hard_sigmoid is a gate's
        activation, that gate's columns are written times 1.2 (hard_sigmoid of 1.2x)."""
        cfg = {**self.config()}
        weights = dict(self.weights())
        if self.keras_major < 3:
            scale = np.ones(len(self.gates) * self.units, self.dtype)
            for i, g in enumerate(self.gates):
                if self.gate_activation(g) == "hard_sigmoid":
                    scale[i * self.units:(i + 1) * self.units] = 1.2
            weights = {k: w * scale for k, w in weights.items()}
            if self.activation == "hard_sigmoid":
                from ..errors import ModelFileError

                raise ModelFileError(
                    f"layer {self.name!r}: Keras 2's hard_sigmoid as the {self.class_name}'s "
                    f"activation (not its recurrent_activation) has no Keras 3 equivalent; "
                    f"write .npz instead")
        return cfg, list(weights.values())

    def pre_activation_title(self, section) -> str:
        """What a gate section calls its pre-activation: z, or a in every section of a cell
        with a gate titled z (GRU's update gate: a column z beside z, or beside the state
        update's z⊙h₋₁, reads as that gate)."""
        return "a" if any(self.gate_title(g) == "z" for g in self.gates) else "z"

    def equation(self, section=""):
        if section in self.gates:
            act, pre = self.gate_activation(section), self.pre_activation_title(section)
            return (f"{self.gate_title(section)} = {act}({pre}),  {pre} = x·W + h·U + b  "
                    f"(gate {section})")
        return super().equation(section)

    def titles(self):
        return {**super().titles(), "gate": "value"}

    def section_titles(self, section) -> dict:
        """Column titles of a trace section: a gate's value is named as the gate."""
        if section in self.gates:
            return {**self.titles(), "z": self.pre_activation_title(section),
                    "gate": self.gate_title(section)}
        return self.titles()

    def gate_columns(self, gate) -> tuple:
        """The terms of a gate's section, in order (the parts of z, then z and the gate)."""
        return ("xw", "hu", "bias", "z", "gate")

    def trace_sections(self, trace):
        """One section a gate (the parts of z, z, the gate's value) and one for the state."""
        shape = trace["h"].shape
        out = []
        for g in self.gates:
            cols = {}
            for k in self.gate_columns(g):
                if k in trace:
                    a = trace.per_gate(k)[g] if k in self.gate_terms() else trace[k]
                    cols[k] = np.broadcast_to(a, shape) if a.ndim == 1 else a
            out.append((g, cols, self.gate_activation(g), "gate"))
        cols = {k: trace[k] for k in self.state_columns if k in trace}
        out.append(("state", cols, self.activation, "h"))
        return out


def gate_slopes(cell, terms) -> np.ndarray:
    """Each gate block's slope at z, every step at once, for a gated cell's backward steps
    (each block's activation: ``cell.gate_activation``). A "gates" trace
    (rnncli/core/engine.py) has no z: its activations' slopes read off their outputs
    (GatedCell.backward_trace)."""
    H, gate = cell.units, terms["gate"]
    z = terms.get("z", gate)
    slope = np.empty_like(z)
    for b, name in enumerate(cell.gate_activation(g) for g in cell.gates):
        s = slice(b * H, (b + 1) * H)
        slope[..., s] = activations.derivative(name, z[..., s], gate[..., s], cell.keras_major)
    return slope
