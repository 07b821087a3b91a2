"""Fuzzing the input readers: valid .npy, .npz and CSV bytes, mutated (bit flips,
truncation, header and zip-directory edits, huge numbers and cells), fed to read_input
from a file and from stdin. Each case ends in an array or in an RnncliError of one line;
any other exception fails the test and names the case to replay.

200 cases per run; RNNCLI_FUZZ_INPUTS=N for more, RNNCLI_FUZZ_SEED for another sequence,
RNNCLI_FUZZ_REPORT=path.json to keep the counts (cases, outcomes by message, slowest case).
"""

import io
import json
import os
import random
import re
import resource
import struct
import time

import numpy as np
from conftest import sample
from hostile_files import npy_of

from rnncli import limits
from rnncli.errors import RnncliError
from rnncli.io.inputs import read_input

CASES = int(os.environ.get("RNNCLI_FUZZ_INPUTS", "200"))
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


def _category(message):
    said = message.split(": ", 1)[-1]
    said = re.sub(r"'[^']*'|\([^)]*\)|[\d,.]+", "_", said)
    return " ".join(said.split()[:7])


def test_fuzz_inputs(tmp_path):
    """Every mutated input is read or refused with an RnncliError of one line."""
    rng = random.Random(SEED)
    sources = seeds()
    outcomes, slowest = {}, (0.0, None)
    path = tmp_path / "case.bin"
    with limits.override(max_memory="256M"):
        for n in range(CASES):
            label = rng.choice(sorted(sources))
            kind = label.split()[0] if label[:3] in ("npy", "npz") else "csv"
            data = mutate(rng, kind, sources[label])
            via_stdin = rng.random() < 0.4
            key = rng.choice([None, None, "a", "b", "x"]) if kind == "npz" else None
            t0 = time.perf_counter()
            try:
                if via_stdin:
                    got = read_input("-", key=key, stdin=io.BytesIO(data))
                else:
                    path.write_bytes(data)
                    got = read_input(str(path), key=key)
                # touch the data: a mapped array past the file's end would crash here
                with np.errstate(all="ignore"):
                    float(np.asarray(got.array, np.float64).sum())
                got.has_nonfinite, got.overflows(np.float32)
                outcome = "read"
            except RnncliError as e:
                assert str(e) and "\n" not in str(e), (n, label, str(e))
                outcome = f"{type(e).__name__}: {_category(str(e))}"
            except Exception as e:  # anything else is a bug: the point of the test
                replay = tmp_path / f"failing_case_{n}.bin"
                replay.write_bytes(data)
                raise AssertionError(f"case {n} ({label}, {'stdin' if via_stdin else 'file'}, "
                                     f"key={key}): {type(e).__name__}: {e}; bytes in "
                                     f"{replay}") from e
            elapsed = time.perf_counter() - t0
            slowest = max(slowest, (elapsed, f"case {n} ({label})"))
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    refused = sum(v for k, v in outcomes.items() if k != "read")
    report = {"cases": CASES, "seed": SEED, "read": outcomes.get("read", 0), "refused": refused,
              "max_seconds_per_case": round(slowest[0], 3), "slowest": slowest[1],
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
              "outcomes": dict(sorted(outcomes.items(), key=lambda kv: -kv[1]))}
    if os.environ.get("RNNCLI_FUZZ_REPORT"):
        with open(os.environ["RNNCLI_FUZZ_REPORT"], "w") as f:
            json.dump(report, f, indent=1)
    assert refused > 0 and outcomes.get("read", 0) > 0, report
