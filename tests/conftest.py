import os
import uuid

import pytest

from checkpoints import write_tiny_msclap_checkpoint
from processes import MARKER, left_behind


def pytest_configure(config):
    # Inherited by every process a test starts: what outlives the session is found by it.
    os.environ.setdefault(MARKER, uuid.uuid4().hex)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if any process a test started is still alive: servers, workers, pools."""
    from encoders.decoding import close_pools
    from postgres import drop_test_databases, stop_throwaway_cluster

    close_pools()
    drop_test_databases()
    stop_throwaway_cluster()
    left = left_behind(os.environ[MARKER])
    if left:
        lines = "\n".join(f"  {pid}: {command}" for pid, command in sorted(left.items()))
        session.config.get_terminal_writer().line(f"processes left behind by the tests:\n{lines}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A small random MS-CLAP 2023 checkpoint (official layout) with GPT-2 tokenizer files beside it."""
    return write_tiny_msclap_checkpoint(tmp_path_factory.mktemp("tiny-msclap"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_weights):
    from encoders import load_encoder

    return load_encoder("msclap-2023", weights=tiny_weights, device="cpu")
