"""Shared fixtures: the Keras reference cases (tests/data/*/manifest.json) as test parameters."""

import json
import os
import select

import numpy as np
import pytest

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data")
ROOT = os.path.dirname(HERE)
SAMPLES = os.path.join(ROOT, "sample_weights")
REFERENCE_SETS = ("keras_reference", "generated", "lstm_gru_reference")
WITH_CONFIG = {"keras3_archive", "keras3_legacy_h5", "keras2_model_h5"}

# What a weights-only file needs to be told (its config is not Keras' default).
SHARED_OVERRIDES = {
    "seed004_relu": {"activation": "relu"},
    "embedding_masked_classifier": {"embedding.mask_zero": "true"},
    "masking_backwards_sigmoid": {"activation": "sigmoid", "go_backwards": "true"},
    "seed003_initial_state": {"return_sequences": "true"},
    "k2_lstm_hard_sigmoid": {"recurrent_activation": "hard_sigmoid"},
    "embedding_bilstm_tagger": {"emb.mask_zero": "true", "tags.activation": "softmax"},
    "gru_reset_before_backwards": {"go_backwards": "true"},
    "mixed_stack": {"layer_order": "rnn,lstm,gru"},
}
# seed003's layer returns sequences, so Keras' output is its hidden sequence.
EXTRA_HIDDEN = {"seed003_initial_state": {"simple_rnn": "seed003_initial_state/expected_output.npy"}}


def load_cases():
    params = []
    for ref in REFERENCE_SETS:
        base = os.path.join(DATA, ref)
        manifest = os.path.join(base, "manifest.json")
        if not os.path.exists(manifest):
            continue
        with open(manifest) as f:
            for case in json.load(f)["cases"]:
                case = dict(case, base=base)
                case.setdefault("weights_only_overrides", SHARED_OVERRIDES.get(case["name"]))
                hidden = dict(case["expected"].get("hidden", {}))
                hidden.update(EXTRA_HIDDEN.get(case["name"], {}))
                case["hidden"] = hidden
                for fmt, rel in case["files"].items():
                    params.append(pytest.param(case, fmt, os.path.join(base, rel),
                                               id=f"{ref}/{case['name']}/{fmt}"))
    return params


CASES = load_cases()


def blas_rows_are_independent() -> bool:
    """Whether this machine's BLAS gives a row of a product the same bits whatever the batch
    around it and its place in it. OpenBLAS's AVX-512 kernels (seen on an AMD EPYC) do not:
    a row's sum is blocked by the matrix's size, a few ulps apart."""
    rng = np.random.default_rng(0)
    for n in (16, 64, 256):
        u = rng.standard_normal((n, n)).astype(np.float32)
        x = rng.standard_normal((70, n)).astype(np.float32)
        whole = x @ u
        order = rng.permutation(70)
        if not np.array_equal((x[order] @ u)[np.argsort(order)], whole):
            return False
        for m in (2, 3, 5, 23, 33):
            if not np.array_equal(x[:m] @ u, whole[:m]):
                return False
    return True


BLAS_ROWS_INDEPENDENT = blas_rows_are_independent()


def assert_same_numbers(actual, expected):
    """Equal to the bit where this BLAS computes a row alike in any batch; otherwise within
    a few ulps of the dtype (the same sums, blocked in another order)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if BLAS_ROWS_INDEPENDENT or actual.dtype.kind != "f":
        np.testing.assert_array_equal(actual, expected)
    else:
        eps = float(np.finfo(actual.dtype).eps)
        np.testing.assert_allclose(actual, expected, rtol=64 * eps, atol=64 * eps)


def ref_path(*parts):
    return os.path.join(DATA, "keras_reference", *parts)


def sample(*parts):
    return os.path.join(SAMPLES, *parts)


def load(case, rel):
    """An array of a case, or a dict of them (an .npz: LSTM initial states h and c)."""
    data = np.load(os.path.join(case["base"], rel))
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            return {k: data[k] for k in data.files}
    return data


def assert_outputs_match_keras(case, path):
    """Run a case's full model file on its input; every output must be Keras' to 1e-5."""
    import rnncli

    model = rnncli.load_model(path)
    x = load(case, case["input"])
    h0 = load(case, case["initial_state"]) if "initial_state" in case else None
    result = model.run(x, initial_state=h0)
    for key, rel in case["expected"].items():
        if key.startswith("output"):
            i = 0 if key == "output" else int(key.split("_")[1])
            np.testing.assert_allclose(result.outputs[i], load(case, rel), atol=1e-5, rtol=1e-5)


@pytest.fixture
def seed000():
    import rnncli

    return rnncli.load_model(sample("seed000_two_units.keras"))


@pytest.fixture
def ones_twos_threes():
    return np.array([[[1.0] * 5, [2.0] * 5, [3.0] * 5]], np.float32)


def read_until(proc, line: str, timeout=120):
    """Read ``proc``'s stderr (a binary pipe) up to and including ``line``; return what was
    read. Waits for the line, not for a time: ``timeout`` only ends a test whose program
    hangs. Bytes read past the line are kept in ``proc.stderr_rest`` for later."""
    fd, data = proc.stderr.fileno(), getattr(proc, "stderr_rest", b"")
    want = b"\n" + line.encode() + b"\n"
    while want not in b"\n" + data:
        if not select.select([fd], [], [], timeout)[0]:
            proc.kill()
            pytest.fail(f"no {line!r} on stderr in {timeout} s: {data.decode()}")
        chunk = os.read(fd, 65536)
        if not chunk:
            proc.wait(timeout=60)
            pytest.fail(f"the program ended (exit {proc.returncode}) before {line!r}: "
                        f"{data.decode()}")
        data += chunk
    end = (b"\n" + data).index(want) + len(want) - 1
    proc.stderr_rest = data[end:]
    return data[:end].decode()


def rest_of(proc, timeout=60):
    """(exit code, the rest of stderr) once ``proc`` ends."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, (getattr(proc, "stderr_rest", b"") + err).decode()


def signals_at_default(then=None):
    """A ``preexec_fn`` for a child that a test will signal: SIGINT, SIGTERM and SIGHUP at
    their default, whatever this process inherited. A shell starts a background job
    (``pytest ... &``) with SIGINT ignored, its children inherit that, and rnncli rightly
    keeps an ignored signal ignored: a Ctrl-C test would then wait for an exit that never
    comes. ``then``: another preexec function to run after."""
    import signal

    def preexec():
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        if then is not None:
            then()

    return preexec


def one_line(exc_type, func, *args, match=None, **kwargs) -> str:
    """``func(*args, **kwargs)`` raises ``exc_type`` with a message of one line (containing
    ``match`` when given); returns the message."""
    with pytest.raises(exc_type) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    if match:
        assert match in message, message
    return message


def ort_run(path, feeds):
    """ONNX Runtime's outputs by name for ``feeds`` (skips the test without onnxruntime)."""
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
