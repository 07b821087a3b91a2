"""Recurrent layers around a cell, as Keras' ``RNN`` and ``Bidirectional``: the time order
(``go_backwards``), masks, initial states, what the layer returns
(``return_sequences``, ``return_state``) and merging two directions. Written once
for every cell.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError, ModelFileError, UnsupportedLayerError
from . import engine as _engine
from .layer import Layer
from .result import DirectionResult, LayerResult, Trace

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class RNN(Layer):
    """A cell run over time (Keras' ``SimpleRNN``, ``LSTM``, ``GRU`` are this with their cell).

    Shapes: input (B, T, D); states (B, H) each, in ``cell.state_names`` order.
    """

    recurrent = True
    options = ("go_backwards", "return_sequences", "return_state", "zero_output_for_mask")

    def __init__(self, name, cell, *, return_sequences=False, return_state=False,
                 go_backwards=False, zero_output_for_mask=False, stateful=False, config=None):
        super().__init__(name, config)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.stateful = bool(stateful)
        # The states a file stores for this layer (ONNX initial_h/initial_c), used when the
        # caller gives none: a tuple of (batch or 1, H) arrays in state_names order.
        self.default_initial_state = None

    @property
    def class_name(self):
        return self.cell.class_name

    # The cell's declarations, as Keras layers expose them.
    units = property(lambda self: self.cell.units)
    input_dim = property(lambda self: self.cell.input_dim)
    dtype = property(lambda self: self.cell.dtype)
    activation = property(lambda self: self.cell.activation)
    use_bias = property(lambda self: self.cell.use_bias)
    state_names = property(lambda self: self.cell.state_names)
    kernel = property(lambda self: self.cell.kernel)
    recurrent_kernel = property(lambda self: self.cell.recurrent_kernel)
    bias = property(lambda self: self.cell.bias)

    @property
    def directions(self) -> dict:
        return {"": self}

    @property
    def output_width(self) -> int:
        return self.units

    def weights(self):
        return self.cell.weights()

    def step(self, x_t, *states):
        return self.cell.step(x_t, *states)

    @property
    def settable(self):
        return (*self.cell.settable, *self.options)

    def configure(self, key, value):
        if key in self.cell.settable:
            self.cell.configure(key, value)
        else:
            super().configure(key, value)

    # ------------------------------------------------------------ states

    def initial_state_from(self, value, batch) -> tuple:
        """An initial state as users give it -> a tuple of (batch, H) arrays, one per state.

        ``value``: an array (a one-state cell), a tuple/list of arrays in
        ``state_names`` order, or a dict by state name; each (H,) or (batch, H)."""
        names = self.state_names
        if isinstance(value, dict):
            missing = [n for n in names if n not in value]
            if missing:
                raise InputDataError(
                    f"initial state for layer {self.name!r} needs {', '.join(names)}; "
                    f"missing {', '.join(missing)}")
            value = [value[n] for n in names]
        elif not isinstance(value, (tuple, list)):
            value = [value]
        if len(value) != len(names):
            raise InputDataError(
                f"initial state for layer {self.name!r} ({self.class_name}) has "
                f"{len(value)} array(s); expected {len(names)} ({', '.join(names)})")
        return tuple(_spread(v, batch, self.units, self.dtype, self.name,
                             n if len(names) > 1 else None) for v, n in zip(value, names))

    # ------------------------------------------------------------ running

    def run(self, x, mask=None, initial_state=None, trace=False, keep=True,
            engine=None) -> DirectionResult:
        """The cell over a whole sequence, in this layer's time order.

        x: (B, T, D); mask: (B, T) bool or None; initial_state: a tuple of (B, H) arrays.
        Sequences come back in Keras' order (reversed time for go_backwards); with
        ``keep=False`` and no trace none are kept: O(B x H) memory."""
        x = np.asarray(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        if x.ndim != 3 or x.shape[-1] != self.input_dim:
            raise InputDataError(
                f"layer {self.name!r} expects input of shape (batch, timesteps, "
                f"{self.input_dim}), got {x.shape}")
        B, T, _ = x.shape
        if self.go_backwards:
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        if mask is not None and mask.all():
            mask = None
        if initial_state is None and self.default_initial_state is not None:
            initial_state = self._default_states(B)
        if initial_state is not None:
            for s in initial_state:
                if np.shape(s) != (B, self.units):
                    raise InputDataError(
                        f"layer {self.name!r}: initial state must have shape "
                        f"({B}, {self.units}), got {np.shape(s)}")
        scan = _engine.scan(self.cell, x, initial_state, mask, self.zero_output_for_mask,
                            trace, keep, engine)
        states = dict(zip(self.state_names, scan.states))
        tr = None
        if trace:
            cell = self.cell
            terms = scan.terms.arranged(cell.trace_order(), cell.static_terms())
            order = np.arange(T)[::-1] if self.go_backwards else np.arange(T)
            tr = Trace(cell, terms, mask, order, x)
        return DirectionResult(scan.sequences if scan.sequences else {}, states, tr)

    def stored_initial_state(self, batch) -> tuple | None:
        """The initial state the file stores (``default_initial_state``) for ``batch``
        rows, as ``call`` takes it, or None (zeros)."""
        return None if self.default_initial_state is None else self._default_states(batch)

    def _default_states(self, batch) -> tuple:
        out = []
        for s in self.default_initial_state:
            if s.shape[0] not in (1, batch):
                raise InputDataError(
                    f"layer {self.name!r} starts from the initial state its file stores, "
                    f"for a batch of {s.shape[0]}; expected that batch size, got {batch} "
                    f"(or give an initial state)")
            out.append(np.broadcast_to(s.astype(self.dtype, copy=False),
                                       (batch, self.units)).copy())
        return tuple(out)

    def call(self, x, mask=None, initial_state=None, trace=False, keep=True, engine=None):
        d = self.run(x, mask, initial_state, trace, keep or self.return_sequences, engine)
        seq = d.sequence
        y = seq if self.return_sequences else (seq[:, -1] if seq is not None else d.states["h"])
        # Keras passes the input's mask on as it is, even when go_backwards returns the
        # sequence in reversed order (RNN.compute_mask); a layer stacked on it sees that.
        out_mask = mask if self.return_sequences else None
        outputs = [(y, out_mask)]
        if self.return_state:
            outputs += [(d.states[n], None) for n in self.state_names]
        return LayerResult(self, {"": d}, seq, mask, outputs)


def _spread(value, batch, units, dtype, layer, state=None):
    s = np.asarray(value, dtype=dtype)
    if s.ndim == 1:
        s = s[None]
    if s.ndim != 2 or s.shape[1] != units or s.shape[0] not in (1, batch):
        which = f" ({state})" if state else ""
        raise InputDataError(
            f"initial state{which} for layer {layer!r} must have shape ({units},) or "
            f"({batch}, {units}), got {np.shape(value)}")
    return np.broadcast_to(s, (batch, units)).copy()


def merge(a, b, mode):
    if mode == "concat":
        return np.concatenate([a, b], axis=-1)
    if mode == "sum":
        return a + b
    if mode == "mul":
        return a * b
    if mode == "ave":
        return (a + b) / 2
    raise UnsupportedLayerError(f"unknown merge_mode {mode!r}; expected concat, sum, mul, ave or None")


class Bidirectional(Layer):
    """Keras ``Bidirectional``: a forward and a go_backwards layer, merged."""

    class_name = "Bidirectional"
    recurrent = True

    @property
    def settable(self):
        return ("merge_mode", *self.forward_layer.cell.settable, "go_backwards",
                "return_sequences", "return_state")

    def __init__(self, name, forward_layer: RNN, backward_layer: RNN, merge_mode="concat",
                 config=None):
        super().__init__(name, config)
        if merge_mode not in MERGE_MODES:
            raise UnsupportedLayerError(
                f"layer {name!r}: unknown merge_mode {merge_mode!r}; expected concat, sum, "
                f"mul, ave or None")
        if forward_layer.input_dim != backward_layer.input_dim:
            raise ModelFileError(
                f"layer {name!r}: forward and backward kernels disagree on input size "
                f"({forward_layer.input_dim} vs {backward_layer.input_dim})")
        self.forward_layer, self.backward_layer = forward_layer, backward_layer
        self.merge_mode = merge_mode
        # Keras: inside Bidirectional, masked steps output zeros in the returned sequences.
        # (Without return_sequences Keras returns the last unmasked output: the final state.)
        for layer in (forward_layer, backward_layer):
            layer.zero_output_for_mask = True

    return_sequences = property(lambda self: self.forward_layer.return_sequences)
    return_state = property(lambda self: self.forward_layer.return_state)
    input_dim = property(lambda self: self.forward_layer.input_dim)
    dtype = property(lambda self: self.forward_layer.dtype)
    activation = property(lambda self: self.forward_layer.activation)
    state_names = property(lambda self: self.forward_layer.state_names)
    cell = property(lambda self: self.forward_layer.cell)

    @property
    def inner_class_name(self):
        return self.forward_layer.class_name

    @property
    def units(self):
        u = self.forward_layer.units
        return 2 * u if self.merge_mode == "concat" else u

    output_width = units

    @property
    def directions(self):
        return {"forward": self.forward_layer, "backward": self.backward_layer}

    def weights(self):
        w = {f"forward/{k}": v for k, v in self.forward_layer.weights().items()}
        w.update({f"backward/{k}": v for k, v in self.backward_layer.weights().items()})
        return w

    def configure(self, key, value):
        if key == "merge_mode":
            mode = None if str(value).lower() == "none" else str(value).lower()
            if mode not in MERGE_MODES:
                raise UnsupportedLayerError(
                    f"layer {self.name!r}: unknown merge_mode {value!r}; expected concat, "
                    f"sum, mul, ave or None")
            self.merge_mode = mode
        elif key == "go_backwards":  # both flip: keep Keras' pairing
            self.forward_layer.configure(key, value)
            self.backward_layer.go_backwards = not self.forward_layer.go_backwards
        else:
            for layer in (self.forward_layer, self.backward_layer):
                layer.configure(key, value)

    def stored_initial_state(self, batch) -> tuple | None:
        """Both directions' stored initial states (zeros for one that stores none), or
        None when neither does."""
        f, b = self.forward_layer, self.backward_layer
        states = [d.stored_initial_state(batch) for d in (f, b)]
        if states == [None, None]:
            return None
        return tuple(s for d, st in zip((f, b), states)
                     for s in (st if st is not None else d.cell.initial_states(batch)))

    def initial_state_from(self, value, batch) -> tuple:
        """Forward then backward states; one array of 2·H columns is split in half
        (a Bidirectional SimpleRNN's state as rnncli 0.1 took it)."""
        f, b = self.forward_layer, self.backward_layer
        n = len(f.state_names)
        if not isinstance(value, (tuple, list, dict)):
            value = np.asarray(value)
            hf = f.units
            if n != 1 or value.shape[-1] != 2 * hf:
                raise InputDataError(
                    f"layer {self.name!r}: initial state for a Bidirectional layer must have "
                    f"{2 * hf} columns (forward then backward), got shape {value.shape}")
            value = [value[..., :hf], value[..., hf:]]
        if isinstance(value, dict):
            value = [value.get("forward"), value.get("backward")]
            return f.initial_state_from(value[0], batch) + b.initial_state_from(value[1], batch)
        if len(value) != 2 * n:
            raise InputDataError(
                f"initial state for layer {self.name!r} has {len(value)} arrays; expected "
                f"{2 * n} ({', '.join(f.state_names)} forward, then backward)")
        return f.initial_state_from(list(value[:n]), batch) + \
            b.initial_state_from(list(value[n:]), batch)

    def call(self, x, mask=None, initial_state=None, trace=False, keep=True, engine=None):
        n = len(self.state_names)
        init_f = init_b = None  # (keep is ignored: the merge needs both whole sequences)
        if initial_state is not None:
            init_f, init_b = tuple(initial_state[:n]), tuple(initial_state[n:])
        df = self.forward_layer.run(x, mask, init_f, trace, engine=engine)
        db = self.backward_layer.run(x, mask, init_b, trace, engine=engine)
        # The backward output sequence back in forward time, as Keras aligns it.
        full_f, full_b = df.sequence, db.sequence[:, ::-1]
        yf, yb = (full_f, full_b) if self.return_sequences else (df.states["h"], db.states["h"])
        out_mask = mask if self.return_sequences else None
        if self.merge_mode is None:
            outputs, hidden = [(yf, out_mask), (yb, out_mask)], None
        else:
            outputs = [(merge(yf, yb, self.merge_mode), out_mask)]
            hidden = merge(full_f, full_b, self.merge_mode)
        if self.return_state:
            outputs += [(d.states[s], None) for d in (df, db) for s in self.state_names]
        return LayerResult(self, {"forward": df, "backward": db}, hidden, mask, outputs)
