"""Repository-wide test settings.

Under ``pytest -n N`` every worker gets one torch thread: on a machine with N cores,
N workers each running N threads oversubscribe the CPU and run several times slower.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--fuzz", type=int, default=0, metavar="N",
                     help="examples per property in tests/test_fuzz.py (default: the CI budget)")
