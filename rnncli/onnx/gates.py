"""ONNX's recurrent weights and activations <-> Keras' cells, both ways.

ONNX stacks each direction's gate blocks along rows: ``W`` [dirs, G·H, D], ``R``
[dirs, G·H, H], ``B`` [dirs, 2·G·H] = [Wb, Rb]. Gate orders: ONNX LSTM i, o, f, c (Keras
i, f, c, o); GRU z, r, h (as Keras). Keras' kernel is Wᵀ with the blocks reordered.

- RNN, LSTM: one bias is all Keras adds: bias = Wb + Rb (written back as Wb = bias,
  Rb = 0).
- GRU ``linear_before_reset=1`` is Keras' ``reset_after=True``: bias (2, 3H) = [Wb, Rb].
  ``linear_before_reset=0`` adds Rb_h outside the reset, beside Wb_h, so Keras'
  ``reset_after=False`` with its one bias Wb + Rb computes it exactly.

Activations: ``activation_alpha``/``activation_beta`` are consumed in order by the
activations that take them (as ONNX Runtime reads them), not one slot per activation.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, OutputError

OP_CLASS = {"RNN": "SimpleRNN", "LSTM": "LSTM", "GRU": "GRU"}
CLASS_OP = {v: k for k, v in OP_CLASS.items()}
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
TO_KERAS = {"RNN": (0,), "LSTM": (0, 2, 3, 1), "GRU": (0, 1, 2)}  # ONNX blocks in Keras order
FROM_KERAS = {"RNN": (0,), "LSTM": (0, 3, 1, 2), "GRU": (0, 1, 2)}  # Keras blocks in ONNX order

TAKE_ALPHA = ("affine", "leakyrelu", "thresholdedrelu", "scaledtanh", "hardsigmoid", "elu")
TAKE_BETA = ("affine", "scaledtanh", "hardsigmoid")
DEFAULT_ALPHA_BETA = {"hardsigmoid": (0.2, 0.5), "leakyrelu": (0.01, None), "elu": (1.0, None),
                      "thresholdedrelu": (1.0, None)}
PLAIN = {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "softsign": "softsign",
         "softplus": "softplus"}
ONNX_NAMES = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "softsign": "Softsign",
              "softplus": "Softplus"}


def _blocks(a, order, axis):
    parts = np.split(np.asarray(a), len(order), axis=axis)
    return np.concatenate([parts[i] for i in order], axis=axis)


def keras_weights(op, W, R, B, linear_before_reset=0):
    """(kernel, recurrent_kernel, bias or None, reset_after) of one direction's W [G·H, D],
    R [G·H, H] and B [2·G·H] (or None)."""
    order = TO_KERAS[op]
    kernel = np.ascontiguousarray(_blocks(W, order, 0).T)
    recurrent = np.ascontiguousarray(_blocks(R, order, 0).T)
    reset_after = bool(linear_before_reset)
    bias = None
    if B is not None:
        wb, rb = np.split(np.asarray(B), 2)
        wb, rb = _blocks(wb, order, 0), _blocks(rb, order, 0)
        bias = np.stack([wb, rb]) if op == "GRU" and reset_after else wb + rb
    return kernel, recurrent, bias, reset_after


def onnx_weights(op, cell):
    """(W [G·H, D], R [G·H, H], B [2·G·H] or None, linear_before_reset) of a Keras cell."""
    order = FROM_KERAS[op]
    W = np.ascontiguousarray(_blocks(cell.kernel, order, 1).T)
    R = np.ascontiguousarray(_blocks(cell.recurrent_kernel, order, 1).T)
    lbr = int(op == "GRU" and cell.reset_after)
    B = None
    if cell.bias is not None:
        if lbr:
            wb, rb = cell.bias[0], cell.bias[1]
        else:
            wb, rb = cell.bias, np.zeros_like(cell.bias)
        B = np.concatenate([_blocks(wb, order, 0), _blocks(rb, order, 0)])
    return W, R, B, lbr


def _close(a, b):
    return abs(float(a) - float(b)) <= 1e-6


def keras_activations(names, alphas, betas, where) -> list:
    """ONNX activation names with their alpha/beta -> [(Keras name, keras_major or None)]
    (the major version only for hard_sigmoid: Keras 2's is 0.2x + 0.5, Keras 3's x/6 + 0.5).
    ``where`` names the node in errors."""
    alphas, betas = list(alphas or []), list(betas or [])
    out = []
    for name in names:
        low = name.lower()
        alpha, beta = DEFAULT_ALPHA_BETA.get(low, (None, None))
        if low in TAKE_ALPHA and alphas:
            alpha = alphas.pop(0)
        if low in TAKE_BETA and betas:
            beta = betas.pop(0)
        if low in PLAIN:
            out.append((PLAIN[low], None))
        elif low == "hardsigmoid" and _close(beta, 0.5) and _close(alpha, 0.2):
            out.append(("hard_sigmoid", 2))
        elif low == "hardsigmoid" and _close(beta, 0.5) and _close(alpha, 1 / 6):
            out.append(("hard_sigmoid", 3))
        elif low == "elu" and _close(alpha, 1.0):
            out.append(("elu", None))
        elif low == "leakyrelu" and _close(alpha, 0.2):
            out.append(("leaky_relu", None))
        elif low == "affine" and alpha is not None and beta is not None and \
                _close(alpha, 1) and _close(beta, 0):
            out.append(("linear", None))
        else:
            given = ", ".join(f"{k}={v:g}" for k, v in (("alpha", alpha), ("beta", beta))
                              if v is not None)
            raise ModelFileError(
                f"{where}: activation {name}{f' ({given})' if given else ''} has no Keras "
                f"equivalent; expected Tanh, Sigmoid, Relu, Softsign, Softplus, Elu (alpha 1), "
                f"LeakyRelu (alpha 0.2), Affine (1, 0) or HardSigmoid (alpha 0.2 or 1/6, "
                f"beta 0.5)")
    return out


def onnx_activation(name, keras_major, where) -> tuple:
    """A Keras activation -> (ONNX name, alpha or None, beta or None)."""
    if name in ONNX_NAMES:
        return ONNX_NAMES[name], None, None
    if name == "hard_sigmoid":
        return "HardSigmoid", 0.2 if keras_major < 3 else 1 / 6, 0.5
    if name == "linear":
        return "Affine", 1.0, 0.0
    if name == "elu":
        return "Elu", 1.0, None
    if name == "leaky_relu":
        return "LeakyRelu", 0.2, None
    raise OutputError(f"{where}: activation {name!r} has no ONNX recurrent-operator "
                      f"equivalent; expected tanh, sigmoid, relu, softsign, softplus, elu, "
                      f"leaky_relu, hard_sigmoid or linear")


def activation_attributes(acts) -> dict:
    """ONNX attributes for [(ONNX name, alpha, beta)]: ``activations`` and, when any takes
    them, ``activation_alpha``/``activation_beta`` in consumption order."""
    attrs = {"activations": [a[0] for a in acts]}
    alphas = [a[1] for a in acts if a[0].lower() in TAKE_ALPHA]
    betas = [a[2] for a in acts if a[0].lower() in TAKE_BETA]
    if alphas:
        attrs["activation_alpha"] = [float(a) for a in alphas]
    if betas:
        attrs["activation_beta"] = [float(b) for b in betas]
    return attrs
