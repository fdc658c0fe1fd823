"""The optimizers, each its update rule in PyTorch's exact equations (torch.optim docs)."""

from __future__ import annotations

import sympy

from symbp.optim.optimizer import G, Optimizer, P, T


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
        g = -G if opts["maximize"] else G
        if opts["weight_decay"]:
            g = g + h["weight_decay"] * P
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
        g = -G if opts["maximize"] else G
        p = P
        if opts["weight_decay"]:
            if self.decoupled:
                p = P * (1 - h["lr"] * h["weight_decay"])
            else:
                g = g + h["weight_decay"] * P
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
        g = -G if opts["maximize"] else G
        if opts["weight_decay"]:
            g = g + h["weight_decay"] * P
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
        g = -G if opts["maximize"] else G
        if opts["weight_decay"]:
            g = g + h["weight_decay"] * P
        clr = h["lr"] / (1 + (T - 1) * h["lr_decay"])
        acc = s["sum"] + g**2
        return P - clr * g / (sympy.sqrt(acc) + h["eps"]), {"sum": acc}
