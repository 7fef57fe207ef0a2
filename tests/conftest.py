"""Suite-wide test settings."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run faster on one thread, and two OpenMP threads on a busy 2-core machine spin-wait
    badly; one thread also makes timing-free tests independent of the machine's load."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
