import pytest

from torch_ref.train import single_threaded


@pytest.fixture(autouse=True, scope="session")
def _torch_one_thread():
    """The tests' tiny torch ops run ~100x slower with OpenMP threads on a busy 2-core machine."""
    with single_threaded():
        yield


@pytest.fixture
def usage_error(capsys):
    """``usage_error(script, argv) -> stderr``: runs a script module's ``main(argv)`` the way the
    script runs it and asserts the bad-input contract: exit status 2, one stderr line, no traceback."""

    def run(script, argv) -> str:
        with pytest.raises(SystemExit) as exc:
            script._cli.run_main(script.PROG, lambda: script.main(argv))
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err and err.startswith(f"{script.PROG}: error:"), err
        return err

    return run
