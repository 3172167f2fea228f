import pytest

from torch_ref.train import single_threaded


@pytest.fixture(autouse=True, scope="session")
def _torch_one_thread():
    """The tests' tiny torch ops run ~100x slower with OpenMP threads on a busy 2-core machine."""
    with single_threaded():
        yield
