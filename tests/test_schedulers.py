"""Learning-rate schedulers: against torch.optim.lr_scheduler, and against closed forms by hand.

Every schedule runs 30 epochs. With PyTorch installed, each learning rate must equal PyTorch's
exactly (the recursive forms are the same float operations); without it, the closed forms
written out below are the reference.
"""

import math
import warnings

import numpy as np
import pytest

import symbp
from symbp.nn import Parameter
from symbp.optim import lr_scheduler as sched

EPOCHS = 30
LRS = (0.1, 0.03)  # two parameter groups, two base learning rates


def make_opt(lrs=LRS, cls=symbp.optim.SGD):
    groups = [{"params": [Parameter(np.ones(2))], "lr": lr} for lr in lrs]
    return cls(groups, lr=lrs[0])


def torch_opt(lrs=LRS):
    import torch

    groups = [{"params": [torch.nn.Parameter(torch.ones(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


# name -> (symbp factory, torch factory name and kwargs, closed form lr(base, epoch))
CASES = {
    "StepLR": (
        {"step_size": 7, "gamma": 0.5},
        lambda base, e: base * 0.5 ** (e // 7),
    ),
    "MultiStepLR": (
        {"milestones": [3, 10, 10, 21], "gamma": 0.3},
        lambda base, e: base * 0.3 ** sum(m <= e for m in [3, 10, 10, 21]),
    ),
    "ExponentialLR": (
        {"gamma": 0.9},
        lambda base, e: base * 0.9**e,
    ),
    "CosineAnnealingLR": (  # 30 epochs over T_max=12: down, up again past the minimum, down
        {"T_max": 12, "eta_min": 0.001},
        lambda base, e: 0.001 + (base - 0.001) * (1 + math.cos(math.pi * e / 12)) / 2,
    ),
}


def run(scheduler, opt, epochs=EPOCHS):
    """The learning rates of every group before each epoch, and get_last_lr() agreeing."""
    lrs = []
    for _ in range(epochs):
        lrs.append([g["lr"] for g in opt.param_groups])
        assert scheduler.get_last_lr() == lrs[-1]
        scheduler.step()
    return np.array(lrs)


@pytest.mark.parametrize("name", CASES)
def test_against_torch(name):
    torch = pytest.importorskip("torch")
    kwargs, _ = CASES[name]
    opt = make_opt()
    ours = run(getattr(sched, name)(opt, **kwargs), opt)
    topt = torch_opt()
    theirs_sched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    theirs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(EPOCHS):
            theirs.append(list(theirs_sched.get_last_lr()))
            topt.step()
            theirs_sched.step()
    np.testing.assert_array_equal(ours, np.array(theirs))


@pytest.mark.parametrize("name", CASES)
def test_against_closed_form(name):
    kwargs, closed = CASES[name]
    opt = make_opt()
    lrs = run(getattr(sched, name)(opt, **kwargs), opt)
    want = np.array([[closed(base, e) for base in LRS] for e in range(EPOCHS)])
    np.testing.assert_allclose(lrs, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", CASES)
def test_state_dict_round_trip_resumes_the_same_schedule(name):
    kwargs, _ = CASES[name]
    opt = make_opt()
    full = run(getattr(sched, name)(opt, **kwargs), opt)

    opt = make_opt()
    first = getattr(sched, name)(opt, **kwargs)
    head = run(first, opt, 11)
    opt_state, sched_state = opt.state_dict(), first.state_dict()
    first.step()  # the saved state must not alias the live scheduler
    # Resume as in PyTorch: fresh objects, scheduler built before the optimizer state is loaded.
    opt2 = make_opt()
    resumed = getattr(sched, name)(opt2, **kwargs)
    opt2.load_state_dict(opt_state)
    resumed.load_state_dict(sched_state)
    tail = run(resumed, opt2, EPOCHS - 11)
    np.testing.assert_array_equal(np.vstack([head, tail]), full)


@pytest.mark.parametrize("name", CASES)
def test_last_epoch_and_step_epoch_match_torch(name):
    torch = pytest.importorskip("torch")
    kwargs, closed = CASES[name]
    opt, topt = make_opt(), torch_opt()
    for g, tg in zip(opt.param_groups, topt.param_groups):
        g["initial_lr"] = tg["initial_lr"] = g["lr"]
    ours = getattr(sched, name)(opt, last_epoch=4, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, name)(topt, last_epoch=4, **kwargs)
    assert ours.last_epoch == theirs.last_epoch == 5
    assert ours.get_last_lr() == theirs.get_last_lr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.step(17)
        theirs.step(17)
    assert ours.get_last_lr() == theirs.get_last_lr()
    np.testing.assert_allclose(ours.get_last_lr(), [closed(b, 17) for b in LRS], rtol=1e-12)


def test_step_with_epoch_warns_like_torch():
    opt = make_opt()
    s = sched.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="deprecated"):
        s.step(5)
    assert s.get_last_lr() == pytest.approx([b * 0.1**2 for b in LRS])


def test_resume_without_initial_lr_is_a_clear_error():
    with pytest.raises(KeyError, match=r"param_groups\[0\] has no 'initial_lr'"):
        sched.StepLR(make_opt(), step_size=3, last_epoch=5)


def test_a_torch_optimizer_is_refused():
    with pytest.raises(TypeError, match=r"schedules a symbp\.optim optimizer, got .*object"):
        sched.ExponentialLR(object(), gamma=0.5)


def test_scheduled_lr_drives_the_update():
    """The scheduler writes group['lr']; the next step() uses it, with no re-derivation."""
    p = Parameter(np.array([1.0, -2.0]))
    opt = symbp.optim.SGD([p], lr=0.5)
    s = sched.StepLR(opt, step_size=1, gamma=0.1)
    expected = p.data.numpy().copy()
    for lr in (0.5, 0.05, 0.005):
        p.grad = np.array([1.0, 3.0])
        opt.step()
        expected = expected - lr * np.array([1.0, 3.0])  # SGD by hand
        np.testing.assert_allclose(p.data, expected, rtol=1e-15)
        s.step()


# ---------------------------------------------------------------- ReduceLROnPlateau


def plateau_run(metrics, **kwargs):
    opt = make_opt(lrs=(1.0,))
    s = sched.ReduceLROnPlateau(opt, **kwargs)
    lrs = []
    for m in metrics:
        s.step(m)
        lrs.append(s.get_last_lr()[0])
        assert opt.param_groups[0]["lr"] == lrs[-1]
    return lrs, s


def test_plateau_by_hand():
    # patience 2: the third bad epoch in a row reduces. Epochs 1-2 improve (5, then 4); 3, 4, 5
    # are bad -> reduce at 5; 6 improves (3); 7, 8, 9 are bad -> reduce at 9; 10, 11, 12 -> 12.
    metrics = [5.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    lrs, _ = plateau_run(metrics, patience=2, factor=0.5)
    assert lrs == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]


def test_plateau_cooldown_min_lr_and_max_mode_by_hand():
    # cooldown 2 after each reduction; accuracy never improves; lr floored at 0.2
    lrs, s = plateau_run([0.5] * 12, mode="max", patience=0, factor=0.5, cooldown=2, min_lr=0.2)
    # epoch 1 sets the best; 2 is bad -> reduce (cooldown 2); 3, 4 in cooldown; 5 bad -> reduce
    # to max(0.25, 0.2); 6, 7 cooldown; 8 -> max(0.1, 0.2) = 0.2, and so on
    assert lrs == [1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2]
    assert s.best == 0.5 and s.last_epoch == 12


def test_plateau_threshold_rel_and_abs_by_hand():
    # rel 0.1: 0.95 is not better than 1.0 * 0.9; 0.85 is
    _, s = plateau_run([1.0, 0.95], threshold=0.1, patience=5)
    assert s.best == 1.0 and s.num_bad_epochs == 1
    _, s = plateau_run([1.0, 0.85], threshold=0.1, patience=5)
    assert s.best == 0.85 and s.num_bad_epochs == 0
    # abs 0.1: 0.95 is not better than 1.0 - 0.1
    _, s = plateau_run([1.0, 0.95], threshold=0.1, threshold_mode="abs", patience=5)
    assert s.best == 1.0


def test_plateau_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    metrics = np.cumsum(rng.normal(0, 1, EPOCHS)).tolist()  # a random walk: plateaus and dips
    for kwargs in (
        {"patience": 1, "factor": 0.5},
        {"mode": "max", "patience": 2, "cooldown": 1, "threshold": 0.05, "threshold_mode": "abs"},
        {"patience": 0, "factor": 0.3, "min_lr": [0.01, 0.002], "eps": 1e-3},
    ):
        opt, topt = make_opt(), torch_opt()
        ours = sched.ReduceLROnPlateau(opt, **kwargs)
        theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
        for m in metrics:
            ours.step(m)
            theirs.step(m)
            assert ours.get_last_lr() == theirs.get_last_lr(), kwargs
            assert (ours.best, ours.num_bad_epochs, ours.cooldown_counter) == (
                theirs.best,
                theirs.num_bad_epochs,
                theirs.cooldown_counter,
            )


def test_plateau_state_dict_round_trip():
    metrics = [3.0, 2.0, 2.5, 2.4, 2.6, 1.0, 1.1, 1.2, 1.3, 0.5, 0.6, 0.7]
    full, _ = plateau_run(metrics, patience=1, factor=0.5, cooldown=1)
    opt = make_opt(lrs=(1.0,))
    s = sched.ReduceLROnPlateau(opt, patience=1, factor=0.5, cooldown=1)
    for m in metrics[:5]:
        s.step(m)
    opt_state, state = opt.state_dict(), s.state_dict()
    opt2 = make_opt(lrs=(1.0,))
    s2 = sched.ReduceLROnPlateau(opt2, patience=7)  # settings come back from the state
    opt2.load_state_dict(opt_state)
    s2.load_state_dict(state)
    tail = []
    for m in metrics[5:]:
        s2.step(m)
        tail.append(s2.get_last_lr()[0])
    assert tail == full[5:]


def test_plateau_rejects_bad_settings():
    with pytest.raises(ValueError, match=r"factor must be < 1\.0"):
        sched.ReduceLROnPlateau(make_opt(), factor=1.5)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        sched.ReduceLROnPlateau(make_opt(), mode="lowest")
    with pytest.raises(ValueError, match="expected 2 min_lr values"):
        sched.ReduceLROnPlateau(make_opt(), min_lr=[0.1])
