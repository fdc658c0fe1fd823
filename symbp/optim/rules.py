"""The optimizers, each its update rule in PyTorch's exact equations (torch.optim docs)."""

from __future__ import annotations

import sympy

from symbp.optim.optimizer import G, Optimizer, P, T


def _decayed(h, opts, decoupled: bool = False, option: str = "") -> tuple:
    """(p, g) a rule starts from: the gradient negated for ``maximize``; weight decay as an L2
    term of g (PyTorch's default) or, ``decoupled`` (or the group's ``option`` saying so),
    AdamW's shrinking of p by lr·wd. Options are read only where they matter, so a rule's
    structure (``Optimizer.structure``) branches on them only then."""
    g = -G if opts["maximize"] else G
    if not opts["weight_decay"]:
        return P, g
    if opts[option] if option else decoupled:
        return P * (1 - h["lr"] * h["weight_decay"]), g
    return P, g + h["weight_decay"] * P


def _gradient(h, opts):
    """The gradient a rule without decoupled decay steps along (``_decayed``'s g)."""
    return _decayed(h, opts)[1]


class SGD(Optimizer):
    """SGD with momentum, dampening, Nesterov and weight decay, as ``torch.optim.SGD``."""

    defaults = {
        "lr": 1e-3,
        "momentum": 0.0,
        "dampening": 0.0,
        "weight_decay": 0.0,
        "nesterov": False,
        "maximize": False,
    }
    restart_count = True  # t counts the momentum buffer's steps: it starts at t == 1

    def __init__(self, params, lr: float = 1e-3, **kw):
        super().__init__(params, lr=lr, **kw)

    def check(self, group):
        super().check(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")

    def rule(self, h, s, opts):
        g = _gradient(h, opts)
        new = {}
        if opts["momentum"]:
            # PyTorch starts the buffer at the first gradient itself, undampened.
            buf = sympy.Piecewise(
                (g, sympy.Eq(T, 1)),
                (h["momentum"] * s["momentum_buffer"] + (1 - h["dampening"]) * g, True),
            )
            new["momentum_buffer"] = buf
            g = g + h["momentum"] * buf if opts["nesterov"] else buf
        return P - h["lr"] * g, new


class Adam(Optimizer):
    """Adam (and AMSGrad) with L2 weight decay, as ``torch.optim.Adam``."""

    defaults = {
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "amsgrad": False,
        "maximize": False,
    }
    components = {"betas": ("beta1", "beta2")}  # the rule's symbols beta1, beta2
    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), **kw):
        super().__init__(params, lr=lr, betas=tuple(betas), **kw)

    def upgrade(self, group):
        if "beta1" in group:  # a state dict saved when groups held beta1 and beta2
            group["betas"] = (group.pop("beta1"), group.pop("beta2"))
        super().upgrade(group)

    def rule(self, h, s, opts):
        p, g = _decayed(h, opts, decoupled=self.decoupled)
        b1, b2 = h["beta1"], h["beta2"]
        m = b1 * s["exp_avg"] + (1 - b1) * g
        v = b2 * s["exp_avg_sq"] + (1 - b2) * g**2
        new = {"exp_avg": m, "exp_avg_sq": v}
        vmax = v
        if opts["amsgrad"]:
            vmax = sympy.Max(s["max_exp_avg_sq"], v)
            new["max_exp_avg_sq"] = vmax
        step = h["lr"] / (1 - b1**T)
        denom = sympy.sqrt(vmax) / sympy.sqrt(1 - b2**T) + h["eps"]
        return p - step * m / denom, new


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01), as ``torch.optim.AdamW``."""

    defaults = {**Adam.defaults, "weight_decay": 1e-2}
    decoupled = True


class RMSprop(Optimizer):
    """RMSprop (optionally centered, with momentum and weight decay), as ``torch.optim.RMSprop``."""

    defaults = {
        "lr": 1e-2,
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "centered": False,
        "maximize": False,
    }

    def __init__(self, params, lr: float = 1e-2, **kw):
        super().__init__(params, lr=lr, **kw)

    def rule(self, h, s, opts):
        g = _gradient(h, opts)
        a = h["alpha"]
        sq = a * s["square_avg"] + (1 - a) * g**2
        new = {"square_avg": sq}
        if opts["centered"]:
            ga = a * s["grad_avg"] + (1 - a) * g
            new["grad_avg"] = ga
            avg = sympy.sqrt(sq - ga**2) + h["eps"]
        else:
            avg = sympy.sqrt(sq) + h["eps"]
        if opts["momentum"]:
            buf = h["momentum"] * s["momentum_buffer"] + g / avg
            new["momentum_buffer"] = buf
            return P - h["lr"] * buf, new
        return P - h["lr"] * g / avg, new


class Adagrad(Optimizer):
    """Adagrad with learning-rate decay and weight decay, as ``torch.optim.Adagrad``."""

    defaults = {
        "lr": 1e-2,
        "lr_decay": 0.0,
        "weight_decay": 0.0,
        "initial_accumulator_value": 0.0,
        "eps": 1e-10,
        "maximize": False,
    }

    def __init__(self, params, lr: float = 1e-2, **kw):
        super().__init__(params, lr=lr, **kw)

    def initial_state(self, group, name):
        return float(group["initial_accumulator_value"]) if name == "sum" else 0.0

    def rule(self, h, s, opts):
        g = _gradient(h, opts)
        clr = h["lr"] / (1 + (T - 1) * h["lr_decay"])
        acc = s["sum"] + g**2
        return P - clr * g / (sympy.sqrt(acc) + h["eps"]), {"sum": acc}


class Adadelta(Optimizer):
    """Adadelta, as ``torch.optim.Adadelta``: the step is the ratio of two running RMS values,
    of past updates and of past gradients, so ``lr`` (default 1) only scales it."""

    defaults = {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0, "maximize": False}

    def __init__(self, params, lr: float = 1.0, **kw):
        super().__init__(params, lr=lr, **kw)

    def rule(self, h, s, opts):
        g = _gradient(h, opts)
        rho, eps = h["rho"], h["eps"]
        sq = rho * s["square_avg"] + (1 - rho) * g**2
        delta = sympy.sqrt(s["acc_delta"] + eps) / sympy.sqrt(sq + eps) * g
        acc = rho * s["acc_delta"] + (1 - rho) * delta**2
        return P - h["lr"] * delta, {"square_avg": sq, "acc_delta": acc}


class Adamax(Optimizer):
    """Adamax (Adam with the infinity norm), as ``torch.optim.Adamax``."""

    defaults = {
        "lr": 2e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "maximize": False,
    }
    components = {"betas": ("beta1", "beta2")}

    def __init__(self, params, lr: float = 2e-3, betas=(0.9, 0.999), **kw):
        super().__init__(params, lr=lr, betas=tuple(betas), **kw)

    def rule(self, h, s, opts):
        g = _gradient(h, opts)
        b1, b2 = h["beta1"], h["beta2"]
        m = b1 * s["exp_avg"] + (1 - b1) * g
        u = sympy.Max(b2 * s["exp_inf"], sympy.Abs(g) + h["eps"])
        return P - h["lr"] / (1 - b1**T) * m / u, {"exp_avg": m, "exp_inf": u}


class NAdam(Optimizer):
    """Adam with Nesterov momentum and momentum decay, as ``torch.optim.NAdam``.

    PyTorch keeps the running product of the momentum coefficients, ``mu_product``, as one
    number per parameter; here it is a state entry like the others (every entry of it holds
    the same number), so the update stays one formula per parameter entry."""

    defaults = {
        "lr": 2e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum_decay": 4e-3,
        "decoupled_weight_decay": False,
        "maximize": False,
    }
    components = {"betas": ("beta1", "beta2")}

    def __init__(self, params, lr: float = 2e-3, betas=(0.9, 0.999), **kw):
        super().__init__(params, lr=lr, betas=tuple(betas), **kw)

    def initial_state(self, group, name):
        return 1.0 if name == "mu_product" else 0.0

    def rule(self, h, s, opts):
        p, g = _decayed(h, opts, option="decoupled_weight_decay")
        b1, b2, psi = h["beta1"], h["beta2"], h["momentum_decay"]
        mu = b1 * (1 - sympy.Rational(1, 2) * sympy.Float(0.96) ** (T * psi))
        mu_next = b1 * (1 - sympy.Rational(1, 2) * sympy.Float(0.96) ** ((T + 1) * psi))
        prod = s["mu_product"] * mu
        m = b1 * s["exp_avg"] + (1 - b1) * g
        v = b2 * s["exp_avg_sq"] + (1 - b2) * g**2
        denom = sympy.sqrt(v / (1 - b2**T)) + h["eps"]
        new_p = (
            p
            - h["lr"] * (1 - mu) / (1 - prod) * g / denom
            - h["lr"] * mu_next / (1 - prod * mu_next) * m / denom
        )
        return new_p, {"mu_product": prod, "exp_avg": m, "exp_avg_sq": v}


class RAdam(Optimizer):
    """Rectified Adam, as ``torch.optim.RAdam``: plain momentum SGD while the variance of
    the adaptive step is not yet tractable (rho_t <= 5), rectified Adam after."""

    defaults = {
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "decoupled_weight_decay": False,
        "maximize": False,
    }
    components = {"betas": ("beta1", "beta2")}

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), **kw):
        super().__init__(params, lr=lr, betas=tuple(betas), **kw)

    def rule(self, h, s, opts):
        p, g = _decayed(h, opts, option="decoupled_weight_decay")
        b1, b2 = h["beta1"], h["beta2"]
        m = b1 * s["exp_avg"] + (1 - b1) * g
        v = b2 * s["exp_avg_sq"] + (1 - b2) * g**2
        m_hat = m / (1 - b1**T)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * T * b2**T / (1 - b2**T)
        rect = sympy.sqrt(
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        )
        adaptive = sympy.sqrt(1 - b2**T) / (sympy.sqrt(v) + h["eps"])
        step = sympy.Piecewise((m_hat * rect * adaptive, rho_t > 5), (m_hat, True))
        return p - h["lr"] * step, {"exp_avg": m, "exp_avg_sq": v}


class Rprop(Optimizer):
    """Resilient backpropagation, as ``torch.optim.Rprop``: each entry's step size grows by
    ``etas[1]`` while its gradient keeps its sign and shrinks by ``etas[0]`` when it flips
    (that step is then skipped); only the gradient's sign moves the parameter."""

    defaults = {
        "lr": 1e-2,
        "etas": (0.5, 1.2),
        "step_sizes": (1e-6, 50.0),
        "maximize": False,
    }
    components = {"etas": ("etaminus", "etaplus"), "step_sizes": ("step_min", "step_max")}

    def __init__(self, params, lr: float = 1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), **kw):
        super().__init__(params, lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes), **kw)

    def check(self, group):
        super().check(group)
        etaminus, etaplus = group["etas"]
        if not 0.0 < etaminus < 1.0 < etaplus:
            raise ValueError(f"Rprop: invalid etas {group['etas']} (need 0 < eta- < 1 < eta+)")

    def initial_state(self, group, name):
        return float(group["lr"]) if name == "step_size" else 0.0  # as PyTorch: sizes start at lr

    def rule(self, h, s, opts):
        g = -G if opts["maximize"] else G
        agree = g * s["prev"]
        size = sympy.Piecewise(
            (s["step_size"] * h["etaplus"], agree > 0),
            (s["step_size"] * h["etaminus"], agree < 0),
            (s["step_size"], True),
        )
        size = sympy.Min(sympy.Max(size, h["step_min"]), h["step_max"])
        flipped = agree < 0  # a flipped sign: skip this step, and forget this gradient
        sign = sympy.Piecewise((0, flipped), (1, g > 0), (-1, g < 0), (0, True))
        return P - sign * size, {
            "prev": sympy.Piecewise((0, flipped), (g, True)),
            "step_size": size,
        }


class ASGD(Optimizer):
    """Averaged SGD, as ``torch.optim.ASGD``: SGD with a decaying step ``eta``, and ``ax``
    the running average of the iterates from step ``t0`` on.

    PyTorch keeps ``eta`` and ``mu`` as one number per parameter; here they are state entries
    like the others (every entry holds the same number)."""

    defaults = {
        "lr": 1e-2,
        "lambd": 1e-4,
        "alpha": 0.75,
        "t0": 1e6,
        "weight_decay": 0.0,
        "maximize": False,
    }

    def __init__(self, params, lr: float = 1e-2, **kw):
        super().__init__(params, lr=lr, **kw)

    def initial_state(self, group, name):
        return {"eta": float(group["lr"]), "mu": 1.0}.get(name, 0.0)

    def rule(self, h, s, opts):
        g = _gradient(h, opts)
        eta, mu = s["eta"], s["mu"]
        new_p = P * (1 - h["lambd"] * eta) - eta * g
        # mu == 1 copies the iterate exactly (ax + (p - ax) * 1 can round differently)
        ax = sympy.Piecewise((new_p, sympy.Eq(mu, 1)), (s["ax"] + (new_p - s["ax"]) * mu, True))
        new_eta = h["lr"] / (1 + h["lambd"] * h["lr"] * T) ** h["alpha"]
        new_mu = 1 / sympy.Max(1, T - h["t0"])
        return new_p, {"eta": new_eta, "mu": new_mu, "ax": ax}
