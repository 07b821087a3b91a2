"""Fuzzing the input readers: valid .npy, .npz and CSV bytes, mutated (bit flips,
truncation, header and zip-directory edits, huge numbers and cells), fed to read_input
from a file and from stdin, and to read_initial_state (what --initial-state reads). Each
case runs in a forked child (tests/fuzzrun.py) and must end in an array or in an
RnncliError of one line, within a minute and 1 GiB of peak memory; anything else (another
exception, a hang, a crash) fails the test and names the case to replay.

100 cases per run; RNNCLI_FUZZ_INPUTS=N for more, RNNCLI_FUZZ_SEED for another sequence,
RNNCLI_FUZZ_REPORT=folder to keep the counts in folder/inputs.json (cases, outcomes by
message class, slowest case, highest peak memory).
"""

import io
import os
import random
import re
import struct

import fuzzrun
import numpy as np
from conftest import sample
from fuzzrun import category
from hostile_files import npy_of

from rnncli import limits
from rnncli.errors import RnncliError
from rnncli.io.inputs import read_input
from rnncli.io.states import read_initial_state

CASES = int(os.environ.get("RNNCLI_FUZZ_INPUTS", "100"))
SEED = int(os.environ.get("RNNCLI_FUZZ_SEED", "17"))


def _npz(compressed, **arrays):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def seeds():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 3))
    out = {
        "npy f8": npy_of(x), "npy f4 fortran": npy_of(np.asfortranarray(x[0].astype("f4"))),
        "npy i8 ids": npy_of(rng.integers(0, 50, size=(3, 6))),
        "npy >f2": npy_of(x.astype(">f2")), "npy bool": npy_of(x > 0),
        "npy u1 1-D": npy_of(np.arange(7, dtype=np.uint8)),
        "npz stored": _npz(False, x=x), "npz deflate": _npz(True, x=x.astype("f4")),
        "npz two": _npz(True, a=x, b=x[:, :2]),
        "csv": b"a,b,c\n1,2,3\n4.5,-6,7e-3\n8,9,10\n",
        "tsv sample": b"sample\tt\tx\ty\n0\t0\t1\t2\n0\t1\t3\t4\n1\t0\t5\t6\n1\t1\t7\t8\n",
        "csv comments": b"# made by hand\n\n1;2\n3;4\n",
        "spaces": b"1 2 3\n4 5 6\n",
    }
    for name in ("seed000_input.csv", "masked_classifier_input.csv"):
        with open(sample(name), "rb") as f:
            out[name] = f.read()
    return out


HUGE = ["1e300", "-1e400", "nan", "inf", "1" * 400, "9" * 5000, "0x10", "1_0", "", '"', "é",
        "[", "sample", "-0", "1e-400", "\x00", "4" * 140_000]
SHAPE_VALUES = [0, -1, 1, 2**31, 10**12, 2**63, 10**30, "True", "None", "'a'"]
DESCRS = ["<f8", "|O", "<c8", ">i2", "<U4", "<M8[s]", "|b1", "<f2", "xx", "[('a', '<f4')]",
          "(2,)<f4", "|V8", "<f16"]


def _flip(rng, d):
    for _ in range(rng.randint(1, 16)):
        i = rng.randrange(len(d))
        d[i] ^= 1 << rng.randrange(8)
    return d


def _npy_header_edit(rng, d):
    start = d.find(b"{")
    end = d.find(b"\n", start)
    if start < 0 or end < 0:
        return _flip(rng, d)
    text = d[start:end].decode("latin1")
    how = rng.choice(["shape", "shape", "descr", "fortran", "brace", "length", "version"])
    if how == "shape":
        text = re.sub(r"\((.*?)\)", lambda m: "(" + ", ".join(
            str(rng.choice(SHAPE_VALUES)) for _ in range(rng.randint(0, 4))) + ",)", text, count=1)
    elif how == "descr":
        text = re.sub(r"'descr': ('[^']*'|\[.*?\])", f"'descr': {rng.choice(DESCRS)!r}"
                      .replace('"', ""), text, count=1)
    elif how == "fortran":
        text = text.replace("False", rng.choice(["True", "1", "None"])).replace("True", "0", 1)
    elif how == "brace":
        text = text.replace("}", rng.choice(["", " ", "}}", "{"]))
    elif how == "length":
        d[8:10] = struct.pack("<H", rng.choice([0, 1, 9, 60000, rng.randrange(65536)]))
        return d
    else:
        d[6] = rng.choice([0, 2, 3, 4, 255])
        return d
    return d[:start] + text.encode("latin1") + d[end:]


def _zip_edit(rng, d):
    spots = [m.start() for m in re.finditer(rb"PK\x01\x02|PK\x03\x04", bytes(d))]
    if not spots:
        return _flip(rng, d)
    at = rng.choice(spots)
    central = d[at:at + 4] == b"PK\x01\x02"
    fields = {"flags": 8 if central else 6, "method": 10 if central else 8,
              "crc": 16 if central else 14, "csize": 20 if central else 18,
              "size": 24 if central else 22}
    field = rng.choice(list(fields))
    pos = at + fields[field]
    if field in ("flags", "method"):
        d[pos:pos + 2] = struct.pack("<H", rng.choice([0, 1, 8, 9, 12, 14, 99, 0xFFFF]))
    else:
        d[pos:pos + 4] = struct.pack("<I", rng.choice([0, 1, 100, 2**31, 2**32 - 1,
                                                       rng.randrange(2**32)]))
    return d


def _csv_edit(rng, d):
    text = d.decode("utf-8", "replace")
    cells = list(re.finditer(r"[^,\t;\s]+", text))
    how = rng.choice(["cell", "cell", "line", "header", "delimiter"])
    if how == "cell" and cells:
        m = rng.choice(cells)
        text = text[:m.start()] + rng.choice(HUGE) + text[m.end():]
    elif how == "line":
        text += rng.choice(["1," * rng.choice([3, 10_000, 600_000]) + "1\n", "\n" * 500,
                            "[[1, 2]]\n", "sample\n", "1,2\r3,4\r"])
    elif how == "header":
        text = rng.choice(["sample,", "t,", "sample,sample,", "\ufeff", "{", "#"]) + text
    else:
        text = text.replace(rng.choice([",", "\t", ";", "\n"]), rng.choice([",", "\t", " ", ""]))
    return bytearray(text.encode("utf-8", "surrogatepass"))


def mutate(rng, kind, data):
    d = bytearray(data)
    ops = ["flip", "truncate", "zero", "insert", "shuffle"]
    ops += {"npy": ["header"] * 4, "npz": ["zip"] * 3 + ["header"], "csv": ["csv"] * 5}[kind]
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.choice(ops)
        if not d:
            break
        i = rng.randrange(len(d))
        if op == "flip":
            d = _flip(rng, d)
        elif op == "truncate":
            d = d[:i]
        elif op == "zero":
            d[i:i + rng.randint(1, 64)] = bytes(min(64, len(d) - i))
        elif op == "insert":
            d[i:i] = rng.choice([b"\x00", b"\xff" * 8, b"}", b"9" * 50, rng.randbytes(16)])
        elif op == "shuffle":
            chunk = d[i:i + rng.randint(2, 64)]
            rng.shuffle(chunk)
            d[i:i + len(chunk)] = chunk
        elif op == "header":
            d = _npy_header_edit(rng, d)
        elif op == "zip":
            d = _zip_edit(rng, d)
        else:
            d = _csv_edit(rng, d)
    return bytes(d)


def _touch(array):
    """Read every value: a mapped array past the file's end would crash here."""
    with np.errstate(all="ignore"):
        float(np.asarray(array, np.float64).sum())


def read_case(data, how, key, path):
    """One case: ``data`` read as an input (from a file or stdin) or as an initial state;
    the outcome's class, or an exception."""
    try:
        if how == "state":
            path.write_bytes(data)
            got = read_initial_state(str(path))
            for value in (got.values() if isinstance(got, dict) else [got]):
                for array in (value.values() if isinstance(value, dict) else [value]):
                    _touch(array)
            return "read"
        if how == "stdin":
            got = read_input("-", key=key, stdin=io.BytesIO(data))
        else:
            path.write_bytes(data)
            got = read_input(str(path), key=key)
        _touch(got.array)
        got.has_nonfinite, got.overflows(np.float32)
        return "read"
    except RnncliError as e:
        if not str(e) or "\n" in str(e):
            raise AssertionError(f"not one line: {str(e)!r}") from None
        return f"{type(e).__name__}: {category(str(e))}"


def cases(n, seed=SEED):
    """The case list: (number, seed's label, bytes, how, key), the same for a seed."""
    rng = random.Random(seed)
    sources = seeds()
    for i in range(n):
        label = rng.choice(sorted(sources))
        kind = label.split()[0] if label[:3] in ("npy", "npz") else "csv"
        data = mutate(rng, kind, sources[label])
        how = rng.choice(["stdin"] * 4 + ["file"] * 4 + ["state"] * 2)
        key = rng.choice([None, None, "a", "b", "x"]) if kind == "npz" and how != "state" else None
        yield i, label, data, how, key


def test_fuzz_inputs(tmp_path):
    """Every mutated input is read or refused with an RnncliError of one line, within a
    minute and 1 GiB; any other ending fails the test and leaves the case to replay."""
    tally, failed = fuzzrun.Tally(), []
    path = tmp_path / "case.bin"
    with limits.override(max_memory="256M"):
        for n, label, data, how, key in cases(CASES):
            ran = fuzzrun.run_case(read_case, data, how, key, path, timeout=60)
            if ran.failure:
                replay = tmp_path / f"failing_case_{n}.bin"
                replay.write_bytes(data)
                failed.append(f"case {n} ({label}, {how}, key={key}): {ran.failure}: "
                              f"{ran.outcome}; bytes in {replay}")
            tally.add(ran, f"case {n} ({label}, {how})")
    report = tally.report(seed=SEED, failed=failed)
    tally.save(report, "inputs")
    assert not failed, "\n".join(failed[:20])
    read = report["outcomes"].get("read", 0)
    assert 0 < read < CASES, report


def test_the_runner_tells_each_failure():
    import signal
    import time

    def big():
        # 2 GiB touched: over the 1 GiB limit by more than the few hundred MiB by which the
        # shared pages counted at the fork can be off late in a run
        block = np.ones(256 * 2**20)
        return str(block[-1])

    assert fuzzrun.run_case(lambda: "read").failure is None
    assert fuzzrun.run_case(lambda: 1 / 0).outcome == "ZeroDivisionError: division by zero"
    assert fuzzrun.run_case(lambda: time.sleep(30), timeout=0.5).failure == "hang"
    assert fuzzrun.run_case(lambda: os.kill(os.getpid(), signal.SIGSEGV)).failure == "crash"
    ran = fuzzrun.run_case(big)
    assert ran.failure == "memory" and ran.grew_mib > 1024, ran
    assert fuzzrun.run_case(lambda: np.ones(2**40)).failure == "memory"  # over the guard
