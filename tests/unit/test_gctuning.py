"""The garbage collector's thresholds during a read-and-fold pass (``relaxed_gc``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mesh.gctuning import GC_THRESHOLDS, relaxed_gc


@pytest.fixture
def default_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("default_thresholds")
def test_relaxed_for_the_block_and_restored_after() -> None:
    with relaxed_gc():
        assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.usefixtures("default_thresholds")
def test_restored_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), relaxed_gc():
        raise RuntimeError("the pass failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_service_that_relaxed_them_further_keeps_its_own() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(100_000, 30, 200)
        with relaxed_gc():
            assert gc.get_threshold() == (100_000, 30, 200)
        assert gc.get_threshold() == (100_000, 30, 200)
    finally:
        gc.set_threshold(*before)
