"""Repository-wide test settings.

Every test process (each worker under ``pytest -n N``) runs torch on one thread. The test
models are tiny and run fastest on one thread; with more, their small ops and backward passes
contend for the cores, and on a machine with N cores N workers each running N threads
oversubscribe the CPU: several times slower either way. ``OMP_NUM_THREADS`` (unless already
set) passes the same to processes the tests start.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402 - after OMP_NUM_THREADS, which torch reads when it loads

torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--fuzz", type=int, default=0, metavar="N",
                     help="examples per property in tests/test_fuzz.py (default: the CI budget)")
