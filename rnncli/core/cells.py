"""The cells rnncli computes, by the Keras layer class that runs them: one entry a cell."""

from __future__ import annotations


def registry() -> dict:
    """{Keras layer class name: (cell class, layer class)}."""
    from .gru import GRUCell
    from .lstm import LSTMCell
    from .rnn import RNN
    from .simple_rnn import SimpleRNN, SimpleRNNCell

    return {"SimpleRNN": (SimpleRNNCell, SimpleRNN), "LSTM": (LSTMCell, RNN),
            "GRU": (GRUCell, RNN)}
