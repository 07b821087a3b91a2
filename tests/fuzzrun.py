"""One fuzz case per forked child, so that a case can fail in each way the issue names
(tests/test_fuzz_inputs.py, tests/test_fuzz_models.py share it):

- "unexpected": an exception that is not rnncli's own error (or the CLI's "unexpected
  error" line, a traceback, a message of more than one line);
- "hang": the case did not finish in ``timeout`` seconds (the child is killed);
- "crash": the child died of a signal;
- "memory": the child's peak RSS (read from ``os.wait4``'s rusage: the case's own, its
  children's included) grew more than ``max_mib`` over the test process's RSS when it
  forked (the pages the child shares, 60 MiB at the start of a run, some hundreds after
  many tests), or an allocation failed under the guard below.

The child's address space is capped a few GiB above what it starts with: a guard for the
shared machine, never reached by a case within ``max_mib``.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import time
from dataclasses import dataclass

FAILURES = ("unexpected", "hang", "crash", "memory")
GUARD_BYTES = 4 << 30


@dataclass
class Ran:
    outcome: str  # what the case ended in (its message class), or the failure's detail
    seconds: float
    peak_mib: float  # the child's peak RSS
    failure: str | None = None  # one of FAILURES
    base_mib: float = 0.0  # the test process's RSS when it forked: peak_mib - base_mib is the case's

    @property
    def grew_mib(self) -> float:
        return self.peak_mib - self.base_mib


def _status(field: str) -> int:
    """Bytes of a /proc/self/status field (VmSize, VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _child(w, work, args):
    try:
        import faulthandler

        faulthandler.disable()  # a crash is the finding, told by the parent
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            cap = _status("VmSize") + GUARD_BYTES
            if hard == resource.RLIM_INFINITY or cap < hard:
                resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        except (OSError, ValueError):
            pass
        try:
            said = {"outcome": str(work(*args))}
        except MemoryError as e:
            said = {"failure": "memory", "outcome": f"MemoryError: {e}"}
        except BaseException as e:  # anything else is a finding
            said = {"failure": "unexpected", "outcome": f"{type(e).__name__}: {e}"[:4000]}
        os.write(w, json.dumps(said).encode() + b"\n")
    finally:
        os._exit(0)


def run_case(work, *args, timeout: float = 120.0, max_mib: float = 1024.0) -> Ran:
    """Run ``work(*args)`` (returning the outcome's class as a string, or raising) in a child."""
    r, w = os.pipe()
    base = _status("VmRSS") / 2**20
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(w, work, args)
    os.close(w)
    data, deadline = b"", t0 + timeout
    try:
        while not data.endswith(b"\n"):
            left = deadline - time.perf_counter()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
    finished = data.endswith(b"\n")
    if not finished:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t0
    peak = usage.ru_maxrss / 1024
    if not finished:
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) != signal.SIGKILL:
            name = signal.Signals(os.WTERMSIG(status)).name
            return Ran(f"died of {name}", seconds, peak, "crash", base)
        return Ran(f"no answer in {timeout:g} s", seconds, peak, "hang", base)
    said = json.loads(data)
    if peak - base > max_mib and not said.get("failure"):
        return Ran(f"peak RSS {peak:.0f} MiB, {peak - base:.0f} MiB over the test process "
                   f"(ended in: {said['outcome']})", seconds, peak, "memory", base)
    return Ran(said["outcome"], seconds, peak, said.get("failure"), base)


class Tally:
    """Counts by outcome, the slowest case, the highest peak; ``report()`` for the docs."""

    def __init__(self):
        self.outcomes: dict[str, int] = {}
        self.slowest = (0.0, "")
        self.peak = (0.0, "")
        self.grew = (0.0, "")
        self.cases = 0

    def add(self, ran: Ran, name: str):
        self.cases += 1
        said = f"FAILED: {ran.failure}" if ran.failure else ran.outcome
        self.outcomes[said] = self.outcomes.get(said, 0) + 1
        self.slowest = max(self.slowest, (round(ran.seconds, 3), name))
        self.peak = max(self.peak, (round(ran.peak_mib, 1), name))
        self.grew = max(self.grew, (round(ran.grew_mib, 1), name))

    def report(self, **extra) -> dict:
        return {"cases": self.cases, **extra,
                "slowest_seconds": self.slowest[0], "slowest": self.slowest[1],
                "peak_rss_mib": self.peak[0], "peak_case": self.peak[1],
                "most_grown_mib": self.grew[0], "most_grown_case": self.grew[1],
                "outcomes": dict(sorted(self.outcomes.items(), key=lambda kv: -kv[1]))}

    def save(self, report: dict, name: str):
        """To ``$RNNCLI_FUZZ_REPORT/<name>.json`` when that folder is given."""
        folder = os.environ.get("RNNCLI_FUZZ_REPORT")
        if folder:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{name}.json"), "w") as f:
                json.dump(report, f, indent=1)


def category(message: str) -> str:
    """A message's class: its words without the file, numbers and quoted parts."""
    import re

    said = message.strip().splitlines()[-1] if message.strip() else ""
    said = said.removeprefix("rnncli: error: ").removeprefix("rnncli: ")
    said = said.split(": ", 1)[-1]
    said = re.sub(r"'[^']*'|\([^)]*\)|[\d,.]+", "_", said)
    return " ".join(said.split()[:7])
