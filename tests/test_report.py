"""`rnncli report`: one self-contained page with every section, for every kind of layer."""

import os
import re
import time
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DATA, SAMPLES

from rnncli.cli import cli
from rnncli.report import external_refs

LSTM_GRU = os.path.join(DATA, "lstm_gru_reference")
CASES = {
    "simple_rnn": (os.path.join(SAMPLES, "seed002_batch_state.keras"),
                   os.path.join(SAMPLES, "seed002_input.npy"), ["hidden state h"]),
    "lstm": (os.path.join(LSTM_GRU, "lstm_dense", "model.keras"),
             os.path.join(LSTM_GRU, "lstm_dense", "input.npy"),
             ["hidden state h", "cell state c", "gate i", "gate f", "gate c", "gate o"]),
    "gru": (os.path.join(LSTM_GRU, "gru_reset_before_backwards", "model.keras"),
            os.path.join(LSTM_GRU, "gru_reset_before_backwards", "input.npy"),
            ["hidden state h", "gate z", "gate r", "gate h"]),
    "bidirectional": (os.path.join(LSTM_GRU, "embedding_bilstm_tagger", "model.keras"),
                      os.path.join(LSTM_GRU, "embedding_bilstm_tagger", "input.npy"),
                      ["bilstm forward: hidden state h", "bilstm backward: gate f"]),
}


class Headings(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings, self._in = [], False

    def handle_starttag(self, tag, attrs):
        self._in = tag == "h2"

    def handle_endtag(self, tag):
        self._in = False

    def handle_data(self, data):
        if self._in and data.strip():
            self.headings.append(data.strip())


@pytest.mark.parametrize("kind", CASES)
def test_report_has_every_section_and_nothing_from_outside(tmp_path, kind):
    model, x, sections = CASES[kind]
    out = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["report", model, "-i", x, "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    html = out.read_text()
    assert external_refs(html) == []
    assert not re.search(r"<script|<link|@import|url\(http", html, re.I)
    parser = Headings()
    parser.feed(html)
    text = "\n".join(parser.headings)
    for s in ["The model", "Recurrent kernels", "what z is made of", *sections]:
        assert s in text, (s, parser.headings)
    assert "<title>" in html and "masked" in html or kind != "bidirectional"


def test_every_heatmap_cell_carries_its_exact_value(tmp_path):
    model, x, _ = CASES["simple_rnn"]
    out = tmp_path / "r.html"
    CliRunner().invoke(cli, ["report", model, "-i", x, "-o", str(out), "--steps", "0:3"])
    import rnncli

    h = rnncli.load_model(model).run(np.load(x)[:1]).hidden["simple_rnn"][0]
    html = out.read_text()
    assert f"h0 @ t=2: {h[2, 0]}" in html or f"h0 @ t=2: {h[2, 0]:.7g}" in html


def test_a_long_sequence_stays_small(tmp_path):
    """(1, 1000, 32) through 64 units: under 2 MB (the time is printed, not asserted)."""
    from rnncli.keras.random import random_model
    from rnncli.report.build import report

    model = random_model(3, 64, 32)
    x = np.random.default_rng(0).normal(size=(1, 1000, 32)).astype(np.float32)
    t0 = time.perf_counter()
    html = report(model, model.run(x, trace=True))
    print(f"report of (1, 1000, 32) -> 64 units: {time.perf_counter() - t0:.2f} s, "
          f"{len(html) / 1e6:.2f} MB")
    assert len(html) < 2e6


def test_report_wants_html_and_one_sample(tmp_path):
    model, x, _ = CASES["simple_rnn"]
    r = CliRunner().invoke(cli, ["report", model, "-i", x, "-o", str(tmp_path / "r.txt")])
    assert r.exit_code == 2 and "expected a .html file" in r.stderr
    r = CliRunner().invoke(cli, ["report", model, "-i", x, "-o", str(tmp_path / "r.html"),
                                 "--sample", "0,1"])
    assert r.exit_code == 2 and "one sample" in r.stderr


def test_forward_and_trace_heatmaps_fit_the_width(tmp_path):
    x = tmp_path / "long.npy"
    np.save(x, np.random.default_rng(0).normal(size=(1, 300, 3)).astype(np.float32))
    r = CliRunner().invoke(cli, ["forward", "--seed", "1", "--units", "8", "-i", str(x),
                                 "--heatmap", "--width", "80"])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert all(len(ln) <= 80 for ln in lines)
    assert any("steps (mean)" in ln for ln in lines)  # the legend says how steps are pooled
    case = CASES["lstm"]
    r = CliRunner().invoke(cli, ["trace", case[0], "-i", case[1], "--gate", "f", "--heatmap",
                                 "gate", "--sample", "0", "--width", "80"])
    assert r.exit_code == 0, r.stderr
    assert "lstm f  sample 0: f (units × steps)" in r.stdout
    r = CliRunner().invoke(cli, ["trace", case[0], "-i", case[1], "--gate", "state",
                                 "--heatmap", "nope"])
    assert r.exit_code == 2 and "has columns c_prev, fc, ig, c, h" in r.stderr


def test_an_empty_step_selection_is_a_usage_error(tmp_path):
    out = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["report", os.path.join(SAMPLES, "seed000_two_units.keras"),
                                 "-i", os.path.join(SAMPLES, "seed000_input.csv"), "-o", str(out),
                                 "--steps", "10:20"])
    assert r.exit_code == 2
    assert r.stderr == "rnncli: error: --steps 10:20 selects no step; there are 3 (0 to 2)\n"
    assert not out.exists()


def test_report_gradients_are_the_batch_loss_like_grad(tmp_path, monkeypatch):
    """The loss is Keras' (a mean over the whole batch), as `rnncli grad` computes it: the
    page shows the chosen sample's rows of Keras' own gradients (not 3x them, which is
    what the loss of that sample alone would give)."""
    import rnncli.report.build as build

    case = os.path.join(DATA, "gradient_gated", "gru_reset_after_mse")
    expected = np.load(os.path.join(case, "expected_grad_hidden_gru.npy"))
    assert expected.shape[0] == 3
    seen = {}
    real = build.report

    def spy(*args, **kwargs):
        seen["grads"], seen["kwargs"] = args[4], kwargs
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "report", spy)
    out = tmp_path / "g.html"
    r = CliRunner().invoke(cli, ["report", os.path.join(case, "model.keras"),
                                 "-i", os.path.join(case, "input.npy"),
                                 "--target", os.path.join(case, "target.npy"),
                                 "--sample", "1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    row = seen["kwargs"]["gradient_sample"]
    np.testing.assert_allclose(seen["grads"]["grad_hidden/gru"][row], expected[1],
                               rtol=1e-4, atol=1e-7)
    assert "whole batch of 3 sample(s)" in out.read_text()
