"""The process heap: with glibc's settings fixed, freed tick-sized arrays leave the process."""

from __future__ import annotations

import subprocess
import sys

# a worker thread allocates 200 MB in 8 MB arrays three times over, keeping a small array
# after each burst (it pins the heap above the freed space), then the resident MB is printed
_BURSTS = """
import sys, threading
import numpy as np
from rtls.service.heap import tune_heap
if sys.argv[1] == "tuned":
    assert tune_heap()
keep = []
def work():
    for _ in range(3):
        big = [np.ones(1_000_000) for _ in range(25)]
        keep.append(np.ones(1000))
        del big
t = threading.Thread(target=work)
t.start()
t.join()
rss = [line for line in open("/proc/self/status") if line.startswith("VmRSS")][0]
print(int(rss.split()[1]) // 1024)
"""


def _resident_mb(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _BURSTS, mode], capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    return int(out.stdout.split()[-1])


def test_freed_bursts_of_arrays_are_given_back_with_the_heap_tuned() -> None:
    default, tuned = _resident_mb("default"), _resident_mb("tuned")
    assert default > 150  # glibc's dynamic threshold kept the bursts resident
    assert tuned < default / 3, (default, tuned)


# a tick's arrays of a MB or so, allocated and freed over and over: minor page faults counted
_CHURN = """
import resource, sys
import numpy as np
from rtls.service.heap import tune_heap
assert tune_heap()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(500):
    a = np.ones(125_000)  # 1 MB
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_tick_sized_arrays_are_reused_not_faulted_in_each_time() -> None:
    """Below the threshold blocks come from the heap and are reused: a 1 MB array made 500
    times faults its pages in about once, not 500 times (256 pages each: at glibc's 128 KiB
    threshold it cost a tick ~50 % more CPU)."""
    out = subprocess.run([sys.executable, "-c", _CHURN], capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    assert int(out.stdout.split()[-1]) < 500 * 256 // 20
