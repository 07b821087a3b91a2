"""Run real Keras on files rnncli wrote, in a process of its own (tests/test_export_weights.py).

TensorFlow and Keras take ~0.6 GB and seconds to import: kept out of the test process, they
don't slow every later test (each HDF5 model load forks a probe child, and a fork costs in
proportion to the parent's memory). Usage: ``python keras_predict.py JOBS.json OUT.npz``.
JOBS is a list of {"name", "x" (an .npy path), and "model" (a file for
``keras.saving.load_model``) or "simple_rnn_weights" (a weights file for a
SimpleRNN(units, return_sequences=True) on ``input_dim`` features)}. OUT gets each job's
output (the model called on x, as ``predict`` would: eager calls take a fraction of
``predict``'s time on these small inputs) under its name, or its error under ``NAME.error``.
Exit 3: keras can't be imported.
"""

import json
import os
import sys

import numpy as np


def main(jobs_path, out_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import keras
    except ImportError as e:
        print(f"keras is not importable: {e}", file=sys.stderr)
        return 3
    with open(jobs_path) as f:
        jobs = json.load(f)
    out = {}
    for job in jobs:
        try:
            x = np.load(job["x"])
            if "model" in job:
                k = keras.saving.load_model(job["model"], compile=False)
            else:
                w = job["simple_rnn_weights"]
                k = keras.Sequential([keras.Input((None, w["input_dim"])),
                                      keras.layers.SimpleRNN(w["units"], return_sequences=True)])
                k.load_weights(w["path"])
            got = k(x, training=False)  # what predict() computes, without its tf.function
            got = got[0] if isinstance(got, (list, tuple)) else got
            out[job["name"]] = keras.ops.convert_to_numpy(got)
        except Exception as e:  # noqa: BLE001 - reported to the test that asked
            out[job["name"] + ".error"] = np.array(f"{type(e).__name__}: {e}")
    np.savez(out_path, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
