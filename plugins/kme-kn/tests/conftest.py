import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _isolated_stats(tmp_path_factory):
    """Key statistics of tiny models go to a per-session directory, one torch thread."""
    mp = pytest.MonkeyPatch()
    mp.setenv("KME_STATS_DIR", str(tmp_path_factory.mktemp("stats")))
    torch.set_num_threads(1)
    yield
    mp.undo()
