"""rnncli.dask: Zarr exports on a real LocalCluster (2 worker processes on 127.0.0.1).

The reference is rnncli's own single-process .npz export of the same model and input,
batched like the Zarr chunks and with one BLAS thread (rnncli.dask pins every chunk to
one: this machine's OpenBLAS rounds a row differently depending on how a call splits
the batch). Results must agree bit for bit, and stores written different ways (threads
here, 2 workers, a worker killed, interrupted and resumed) byte for byte.
"""

import os
import signal

import numpy as np
import pytest

pytest.importorskip("dask")
pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
from dask.callbacks import Callback  # noqa: E402
from distributed import Client  # noqa: E402

import rnncli  # noqa: E402
import rnncli.dask as rd  # noqa: E402
from rnncli.errors import InputDataError, OutputError, RnncliError  # noqa: E402
from rnncli.io.export import export_results  # noqa: E402
from rnncli.io.zarr_export import local_cluster  # noqa: E402
from rnncli.io.zarrstore import DONE, status  # noqa: E402

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)


def sample(*p):
    return os.path.join(ROOT, "sample_weights", *p)


def padded(rng, shape, low=1):
    """Random features with each sequence's tail zeroed (a ragged length under Masking)."""
    x = rng.standard_normal(shape).astype(np.float32)
    lengths = rng.integers(low, shape[1] + 1, shape[0])
    x[np.arange(shape[1])[None, :] >= lengths[:, None]] = 0
    return x


def case(name):
    """(model, input, initial state or None) for a few hundred sequences."""
    rng = np.random.default_rng(18)
    if name == "return_state":
        return (rnncli.load_model(sample("seed002_batch_state.keras")),
                rng.standard_normal((300, 28, 32)).astype(np.float32), None)
    if name == "bidi_masked":
        path = os.path.join(HERE, "data", "keras_reference", "bidirectional_masked", "model.keras")
        return rnncli.load_model(path), padded(rng, (260, 12, 3)), None
    if name == "token_ids":
        ids = rng.integers(1, 200, (250, 15))
        ids[np.arange(15)[None, :] >= rng.integers(1, 16, 250)[:, None]] = 0
        return rnncli.load_model(sample("masked_classifier.keras")), ids, None
    if name == "initial_state":
        return (rnncli.load_model(sample("seed003_initial_state.keras")),
                rng.standard_normal((210, 9, 4)).astype(np.float32),
                rng.standard_normal((210, 5)).astype(np.float32))
    raise KeyError(name)


CASES = ["return_state", "bidi_masked", "token_ids", "initial_state"]


def reference(model, x, tmp_path, chunk, h0=None, what=None):
    """rnncli's single-process .npz export, batched as the chunks, one BLAS thread."""
    out = str(tmp_path / "reference.npz")
    with rd.one_blas_thread():
        export_results(model, x, out, "npz", initial_state=h0, what=what, batch_size=chunk,
                       force=True)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def tree(path):
    """Every file of a store by relative path, with its bytes."""
    out = {}
    for folder, _, files in os.walk(path):
        for f in files:
            full = os.path.join(folder, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = fh.read()
    return out


def assert_same(store, ref):
    got = rd.read_zarr(store)
    assert sorted(got) == sorted(ref)
    for k, v in ref.items():
        a = got[k][...]
        assert a.dtype == v.dtype and a.shape == v.shape, k
        assert np.array_equal(a, v), f"{k} differs from the .npz export"
        assert a.tobytes() == v.tobytes(), k  # bit for bit, NaN payloads and -0.0 included


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster(2)
    with Client(cluster) as c:
        yield c
    cluster.close()


def test_workers_run_one_thread_with_one_blas_thread_and_this_rnncli(client):
    info = client.scheduler_info()["workers"]
    assert len(info) == 2
    assert sum(w["nthreads"] for w in info.values()) <= os.cpu_count()

    def probe():
        import rnncli
        from rnncli.core import blas

        return os.environ["OPENBLAS_NUM_THREADS"], blas.threads(), rnncli.__file__

    for threads_env, threads, where in client.run(probe).values():
        assert (threads_env, threads) == ("1", 1)
        assert where == rnncli.__file__


@pytest.mark.parametrize("name", CASES)
def test_cluster_export_matches_npz_bit_for_bit(name, client, tmp_path):
    model, x, h0 = case(name)
    np.save(tmp_path / "x.npy", x)
    summary = rd.export_zarr(model, str(tmp_path / "x.npy"), str(tmp_path / "c.zarr"),
                             initial_state=h0, scheduler=client, batch_chunk=37,
                             progress=False)
    assert summary["chunks"] == -(-len(x) // 37) and summary["written"] == summary["chunks"]
    ref = reference(model, x, tmp_path, 37, h0)
    assert_same(str(tmp_path / "c.zarr"), ref)
    if name == "bidi_masked":  # masks and ragged lengths came through with their chunks
        assert not ref["mask/bidi"].all() and ref["mask/bidi"].any()
    # The threads of this process write the very same bytes.
    rd.export_zarr(model, str(tmp_path / "x.npy"), str(tmp_path / "t.zarr"), initial_state=h0,
                   batch_chunk=37, progress=False)
    assert tree(tmp_path / "t.zarr") == tree(tmp_path / "c.zarr")


def test_store_layout_chunks_compression_and_attributes(client, tmp_path):
    model, x, _ = case("bidi_masked")
    np.save(tmp_path / "x.npy", x)
    out = str(tmp_path / "o.zarr")
    rd.export_zarr(model, str(tmp_path / "x.npy"), out, scheduler=client, batch_chunk=50,
                   progress=False)
    root = zarr.open_group(out, mode="r")
    attrs = dict(root.attrs)
    assert attrs["source"]["path"] == model.source["path"]
    assert attrs["rnncli_version"] == rnncli.__version__
    assert attrs["rnncli_export"]["complete"] is True
    paths = attrs["rnncli_arrays"]
    assert paths["hidden/bidi"] == "hidden/bidi/merged"  # beside hidden/bidi/forward
    assert paths["hidden/bidi/forward"] == "hidden/bidi/forward"
    assert DONE not in root
    for name, p in paths.items():
        arr = root[p]
        if name.startswith("bias/"):
            assert arr.chunks == arr.shape
        else:
            assert arr.chunks == (50, *arr.shape[1:])  # batch only: time never splits
        codecs = arr.compressors if hasattr(arr, "compressors") else (arr.compressor,)
        assert codecs and codecs[0] is not None


def test_npz_members_and_zarr_input_give_the_same_store(client, tmp_path):
    model, x, _ = case("return_state")
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "plain.npz", other=x[:2], x=x)
    np.savez_compressed(tmp_path / "packed.npz", x=x)
    src = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=x.shape,
                          chunks=(64, 7, 32), dtype=x.dtype)  # chunked otherwise
    src[...] = x
    ref = reference(model, x, tmp_path, 40)
    stores = {}
    for source, key in [("x.npy", None), ("plain.npz", "x"), ("packed.npz", None),
                        ("in.zarr", None)]:
        out = str(tmp_path / f"{source}.out.zarr")
        rd.export_zarr(model, str(tmp_path / source), out, key=key, scheduler=client,
                       batch_chunk=40, progress=False)
        assert_same(out, ref)
        stores[source] = tree(out)
        zarr.open_group(out, mode="r")  # readable as a whole
    # byte for byte the same but for the input's name, recorded so that --resume checks it
    root_meta = {"zarr.json", ".zattrs"}  # Zarr 3, Zarr 2
    data = [{k: v for k, v in t.items() if k not in root_meta} for t in stores.values()]
    assert all(d == data[0] for d in data[1:])
    attrs = []
    for source in stores:
        a = dict(zarr.open_group(str(tmp_path / f"{source}.out.zarr"), mode="r").attrs)
        assert source in a["rnncli_export"]["input"]["name"]
        a["rnncli_export"]["input"]["name"] = None
        attrs.append(a)
    assert all(a == attrs[0] for a in attrs[1:])


def test_run_is_lazy_and_runs_the_model_once_per_chunk(tmp_path):
    model, x, h0 = case("initial_state")
    X = da.from_array(x, chunks=(50, 9, 4))

    class Count(Callback):
        def __init__(self):
            super().__init__()
            self.keys = []

        def _pretask(self, key, dsk, state):
            self.keys.append(key)

    with Count() as c:
        arrays = rd.run(model, X, initial_state=da.from_array(h0, chunks=(50, 5)))
    assert c.keys == []  # nothing computed
    assert all(isinstance(a, da.Array) for a in arrays.values())
    assert arrays["hidden/simple_rnn"].chunks[0] == (50, 50, 50, 50, 10)
    assert arrays["bias/simple_rnn"].shape == (5,)
    with Count() as c:
        got = dict(zip(arrays, dask.compute(*arrays.values(), scheduler="threads")))
    runs = [k for k in c.keys if "rnncli-run" in str(k)]
    assert len(runs) == 5  # one model run per chunk, shared by every array
    ref = reference(model, x, tmp_path, 50, h0)
    assert sorted(got) == sorted(ref)
    for k in ref:
        assert np.array_equal(got[k], ref[k]), k


def test_run_selects_like_export_and_skips_the_trace(tmp_path):
    model, x, _ = case("return_state")
    arrays = rd.run(model, da.from_array(x, chunks=(100, 28, 32)), what="hidden,state")
    assert sorted(arrays) == ["hidden/simple_rnn", "state/simple_rnn"]
    ref = reference(model, x, tmp_path, 100, what="hidden,state")
    for k, v in arrays.items():
        assert np.array_equal(v.compute(), ref[k])
    with pytest.raises(RnncliError, match="no recurrent layer 'nope'"):
        rd.run(model, da.from_array(x, chunks=100), layers=["nope"])


def test_a_worker_killed_mid_export_loses_and_doubles_nothing(client, tmp_path):
    # (the module's cluster: its nanny starts a new worker for the one killed here)
    model = rnncli.random_model(5, 64, 32)
    x = np.random.default_rng(3).standard_normal((1200, 100, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    killed = []
    pids = client.run(os.getpid)  # the worker processes of the cluster

    def kill_one_busy_worker(done, total):
        if killed or done < 4 * 30:
            return
        busy = [w for w, keys in client.processing().items() if keys]
        if busy:  # as the OOM killer would: no chance to clean up
            killed.append(busy[0])
            os.kill(pids[busy[0]], signal.SIGKILL)

    summary = rd.export_zarr(model, str(tmp_path / "x.npy"), str(tmp_path / "k.zarr"),
                             what="hidden,state", scheduler=client, batch_chunk=30,
                             progress=kill_one_busy_worker)
    after = set(client.scheduler_info()["workers"])
    assert killed and killed[0] in pids and killed[0] not in after  # it really died
    assert summary["written"] == summary["chunks"] == 40
    assert status(str(tmp_path / "k.zarr"))[0]["complete"]
    assert_same(str(tmp_path / "k.zarr"),
                reference(model, x, tmp_path, 30, what="hidden,state"))


class Stop(Exception):
    pass


def test_an_interrupted_export_resumes_to_the_same_bytes(tmp_path):
    model, x, _ = case("return_state")
    np.save(tmp_path / "x.npy", x)
    src, out = str(tmp_path / "x.npy"), str(tmp_path / "r.zarr")

    def stop_after_three_chunks(done, total):
        if done >= 3 * 25:
            raise Stop

    with pytest.raises(Stop):
        rd.export_zarr(model, src, out, batch_chunk=25, progress=stop_after_three_chunks)
    info, done = status(out)
    assert not info["complete"] and 3 <= done < info["chunks"] == 12
    # a chunk caught half-written: data there, no mark (resume must rewrite it whole)
    marks = zarr.open_array(store=out, path=DONE, mode="r")[:]
    torn = int(np.flatnonzero(marks == 0)[0])
    hidden = zarr.open_array(store=out, path="hidden/simple_rnn", mode="r+")
    hidden[torn * 25:(torn + 1) * 25] = 7.0
    with pytest.raises(OutputError, match="interrupted export .* use --resume"):
        rd.export_zarr(model, src, out, batch_chunk=25, progress=False)
    with pytest.raises(OutputError, match="different batch_chunk"):
        rd.export_zarr(model, src, out, batch_chunk=20, resume=True, progress=False)
    seen = []
    summary = rd.export_zarr(model, src, out, batch_chunk=25, resume=True,
                             progress=lambda d, t: seen.append(d))
    assert summary["skipped"] == done and summary["written"] == 12 - done
    assert seen[0] > done * 25 - 25 and seen[-1] == len(x)  # counts what was there
    rd.export_zarr(model, src, str(tmp_path / "clean.zarr"), batch_chunk=25, progress=False)
    assert tree(out) == tree(tmp_path / "clean.zarr")
    assert_same(out, reference(model, x, tmp_path, 25))
    # resuming a complete export has nothing to do
    assert rd.export_zarr(model, src, out, batch_chunk=25, resume=True)["written"] == 0


def test_existing_targets_and_bad_options_are_refused(tmp_path):
    model, x, _ = case("return_state")
    x = x[:40]
    out = str(tmp_path / "o.zarr")
    rd.export_zarr(model, x, out, batch_chunk=16, progress=False)
    with pytest.raises(OutputError, match="already exists; use --force"):
        rd.export_zarr(model, x, out, batch_chunk=16, progress=False)
    rd.export_zarr(model, x, out, batch_chunk=16, what="hidden", force=True, progress=False)
    assert sorted(rd.read_zarr(out)) == ["hidden/simple_rnn"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not a Zarr export written by rnncli"):
        rd.export_zarr(model, x, str(other), force=True, progress=False)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(RnncliError, match="--scheduler and --workers both given"):
        rd.export_zarr(model, x, str(tmp_path / "a.zarr"), scheduler="tcp://127.0.0.1:1",
                       workers=2)
    with pytest.raises(InputDataError, match="has 3 rows; expected 1, or one per sequence"):
        rd.export_zarr(model, x, str(tmp_path / "b.zarr"),
                       initial_state=np.zeros((3, 16), np.float32))
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(InputDataError, match="holds 2 arrays .* choose one with --key"):
        rd.export_zarr(model, str(tmp_path / "two.npz"), str(tmp_path / "c.zarr"))
    with pytest.raises(InputDataError, match="5 features per timestep; the model expects 32"):
        rd.export_zarr(model, x[..., :5], str(tmp_path / "d.zarr"))
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(RnncliError, match="no Dask scheduler answered"):
        rd.export_zarr(model, x, str(tmp_path / "e.zarr"), scheduler="tcp://127.0.0.1:9")


def test_workers_option_starts_and_stops_a_local_cluster(tmp_path):
    model, x, _ = case("token_ids")
    np.savez(tmp_path / "ids.npz", ids=x)
    out = str(tmp_path / "w.zarr")
    summary = rd.export_zarr(model, str(tmp_path / "ids.npz"), out, workers=2,
                             batch_chunk=64, progress=False)
    assert summary["written"] == 4
    assert_same(out, reference(model, x, tmp_path, 64))


def test_a_zarr_group_member_a_single_sequence_and_csv_token_ids(tmp_path):
    model = rnncli.load_model(sample("seed001_dense_head.keras"))
    x = np.random.default_rng(1).standard_normal((30, 10, 3)).astype(np.float32)
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    create = getattr(group, "create_array", None) or group.create_dataset  # Zarr 3, Zarr 2
    create("seqs", shape=x.shape, dtype=x.dtype)[...] = x
    create("other", shape=(2,), dtype="i4")
    with pytest.raises(InputDataError, match="holding 2 arrays .* choose one with --key"):
        rd.export_zarr(model, str(tmp_path / "in.zarr"), str(tmp_path / "a.zarr"))
    with pytest.raises(InputDataError, match="no array 'nope'; it holds other, seqs"):
        rd.export_zarr(model, str(tmp_path / "in.zarr"), str(tmp_path / "a.zarr"), key="nope")
    rd.export_zarr(model, str(tmp_path / "in.zarr"), str(tmp_path / "a.zarr"), key="seqs",
                   batch_chunk=8, progress=False)
    assert_same(str(tmp_path / "a.zarr"), reference(model, x, tmp_path, 8))
    np.save(tmp_path / "one.npy", x[3])  # (T, D): one sequence
    rd.export_zarr(model, str(tmp_path / "one.npy"), str(tmp_path / "b.zarr"), progress=False)
    assert_same(str(tmp_path / "b.zarr"), reference(model, x[3:4], tmp_path, 1))
    classifier = rnncli.load_model(sample("masked_classifier.keras"))
    rd.export_zarr(classifier, sample("masked_classifier_input.csv"), str(tmp_path / "c.zarr"),
                   progress=False)
    got = rd.read_zarr(str(tmp_path / "c.zarr"))
    assert got["mask/simple_rnn"].shape == (4, 12) and not got["mask/simple_rnn"][...].all()
