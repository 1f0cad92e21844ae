"""Ctrl-C stops a command even when a library catches the ``KeyboardInterrupt`` (klcourse.tools.interrupt)."""

import os
import signal
import time

import pytest
from datasets import Dataset

from klcourse.tools import interrupt


class _PressesCtrlC:
    """A ``Dataset.map`` argument whose fingerprint hash is interrupted by Ctrl-C."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler has run by here at the latest, inside datasets' hashing
        return (_PressesCtrlC, ())


@pytest.fixture
def handler(monkeypatch):
    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(interrupt, "_pending", False)
    interrupt.install()
    yield
    signal.signal(signal.SIGINT, before)


def test_a_ctrl_c_that_datasets_swallows_is_raised_again(handler):
    data = Dataset.from_dict({"x": [1, 2, 3]})
    mapped = data.map(lambda row, marker: row, fn_kwargs={"marker": _PressesCtrlC()})
    assert len(mapped) == 3  # datasets caught the KeyboardInterrupt and carried on
    assert interrupt.pending()
    with pytest.raises(KeyboardInterrupt):
        interrupt.check()


def test_no_ctrl_c_no_interrupt(handler):
    assert not interrupt.pending()
    interrupt.check()
