"""How many threads a compiled training step runs on is measured, not fixed (support.pace):
the faster of all threads and one thread is kept, tried again less often while it holds and at
once when the steps slow down; the caller's thread count is given back after every call, on
any return; and a step computes the same numbers on either count."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.compiler.lower import support
from symbp.compiler.lower.support import ALL, PACE_SLOTS, PACE_WINDOW, USING


def _run(cost, steps: int, threads: int = 2, state: np.ndarray | None = None) -> list[int]:
    """The thread count of each of ``steps`` steps of 32 rows, when a step on n threads
    takes ``cost(step, n)`` cycles a row."""
    state = np.zeros(PACE_SLOTS, np.int64) if state is None else state
    now = support.pace_start(state, threads)
    used = []
    for k in range(steps):
        used.append(now)
        now = support.pace(state, cost(k, now) * 32, 32)
    return used


def test_one_thread_is_kept_where_it_is_faster():
    used = _run(lambda k, n: 100 if n == 1 else 300, 2000)
    first = used.index(1)  # the first trial: after the first windows on all threads
    assert first <= 4 * PACE_WINDOW
    later = used[first:]
    assert later.count(2) / len(later) < 0.05  # the trials of all threads grow rarer


def test_all_threads_are_kept_where_they_are_faster():
    used = _run(lambda k, n: 300 if n == 1 else 100, 4000)
    assert used[: 2 * PACE_WINDOW] == [2] * (2 * PACE_WINDOW)
    assert 1 in used  # one thread was tried
    assert used.count(1) / len(used) < 0.02  # and ever less often
    tail = used[2000:]
    assert tail.count(1) <= 3 * (PACE_WINDOW + 1)


def test_a_slowdown_tries_the_other_count_at_once():
    # all threads are faster, until a neighbour takes a core at step 3000: they are 3x slower
    def cost(k: int, n: int) -> int:
        if n == 1:
            return 150
        return 100 if k < 3000 else 300

    used = _run(cost, 3200)
    assert used[2990] == 2
    switched = used.index(1, 3000)
    assert switched - 3000 <= 3 * PACE_WINDOW  # not the hundreds of steps of the backoff
    assert used[-50:] == [1] * 50


def test_one_caller_thread_is_left_alone_and_a_new_count_starts_again():
    state = np.zeros(PACE_SLOTS, np.int64)
    assert set(_run(lambda k, n: 100, 200, threads=1, state=state)) == {1}
    assert _run(lambda k, n: 100 if n == 1 else 300, 200, threads=2, state=state)[0] == 2
    assert state[ALL] == 2


def _cnn(seed: int) -> symbp.CompiledModel:
    symbp.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
    )  # fmt: skip
    return symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), 0.1))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((96, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 96)


def test_a_paced_program_gives_the_callers_thread_count_back(data):
    x, y = data
    model = _cnn(0)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert "pace(paced, cycles() - started, B)" in model.source
    prog = model._train
    slots = prog.ints[-PACE_SLOTS:]
    before = numba.get_num_threads()
    for forced in (0, 1):  # on all threads, then on one
        slots[USING] = forced
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        assert numba.get_num_threads() == before
    bad = y.copy()
    bad[40] = 10  # stops with BAD_LABEL from inside the step
    slots[USING] = 1
    with pytest.raises(IndexError, match="label 10"):
        model.step(x[32:48], bad[32:48])
    assert numba.get_num_threads() == before


def test_a_step_computes_the_same_on_one_thread_and_on_all(data):
    x, y = data
    results = []
    for forced in (0, 1):
        model = _cnn(1)
        model.step(x[:16], y[:16])
        slots = model._train.ints[-PACE_SLOTS:]
        slots[USING] = slots[support.KEPT] = forced
        slots[support.SKIP] = 10**9  # no step timed: no trial of the other count
        for _ in range(3):
            model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        assert slots[USING] == forced
        results.append([p.detach().numpy().copy() for p in model.net.parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_symbp_threads_all_runs_every_step_on_all_threads(data, monkeypatch):
    x, y = data
    monkeypatch.setenv("SYMBP_THREADS", "all")
    model = _cnn(2).build(x[:16], y[:16])
    assert "pace(" not in model.source and "threads_now" not in model.source
    monkeypatch.setenv("SYMBP_THREADS", "fastest")
    with pytest.raises(ValueError, match="SYMBP_THREADS='fastest': expected 'pace' or 'all'"):
        _cnn(2).build(x[:16], y[:16])


def test_evaluate_leaves_the_comparison_of_training_steps_alone(data):
    """Forward-only steps (evaluate) cost less a row than training steps: timed with them,
    they would make whichever count ran them look faster."""
    x, y = data
    model = _cnn(3)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    slots = model._train.ints[-PACE_SLOTS:]
    before = slots.copy()
    model.evaluate(x, y, batch_size=16)
    np.testing.assert_array_equal(slots, before)
    model.step(x[:16], y[:16])
    assert not np.array_equal(slots, before)  # a training step is compared
