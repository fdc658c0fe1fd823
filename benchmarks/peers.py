"""Peer implementations of the symbp benchmark workloads.

This module holds the *other* implementations that ``benchmarks/bench.py`` times symbp against:

* ``torch``      -- PyTorch eager: ``nn.Sequential`` + ``torch.optim`` + a Python loop over steps.
* ``jax_jit``    -- JAX: a jitted ``train_step`` called from a Python loop.
* ``jax_fori``   -- JAX: the whole loop of steps (or epochs) inside one ``lax.fori_loop`` under jit.
* ``numba_hand`` -- a hand-written ``@njit(cache=True)`` loop: forward, backward and update
  written out by hand (explicit loops for tiny layers, ``np.dot`` into preallocated buffers for
  large ones). It is the "what a careful human would write" reference for symbp's generated code.

Workloads (all float32; see ``WORKLOADS``)::

    W1  2-2-2 sigmoid net, half-SSE loss, SGD lr 0.5, batch 1 (one sample)        per step
    W2  digits 64-128-10 ReLU, mean cross-entropy, Adam lr 1e-3, batch 32         per epoch
    W3  synthetic 784-512-512-10 ReLU, mean CE, SGD momentum 0.9 lr 0.01, B=128   per step
    W5  synthetic 10-5-1 ReLU, MSE, SGD lr 0.01, batch 1                          per step

API::

    params = init_params("W2", seed=0)     # dict "w1","b1","w2",... numpy float32, torch layout
    data = make_data("W2", seed=0)         # Data(x, y, batch_size)
    peer = build_peer("torch", "W2", params, data)   # or torch_peer(...), jax_jit_peer(...), ...
    loss = peer.run(3)                     # 3 epochs (W2) or 3 steps (W1/W3/W5) -> final loss
    final = peer.params()                  # dict of numpy arrays, same keys/layout as params

``run`` keeps training from where the previous call stopped (parameters, optimizer state and the
batch cursor persist), so a harness can do a warm-up call and then time repeated calls. The first
call of ``jax_*`` and ``numba_hand`` peers includes compilation (numba caches to disk).

Batching contract (shared with symbp): batch ``k`` is rows ``[k*B, (k+1)*B)`` of ``data.x`` /
``data.y``; the last batch may be short (W2: 56 batches of 32 + one of 5). A *step* workload's
``i``-th step overall uses batch ``i % n_batches``; an *epoch* runs every batch once, in order.
The W2 shuffle is done once in ``make_data`` (no per-epoch reshuffle), so every peer and symbp see
the identical batch sequence and reshuffling cost is not part of what is timed.

Threads: importing this module sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/
``OPENBLAS_NUM_THREADS`` = 2 and ``XLA_FLAGS`` (unless already set in the environment). BLAS
libraries read these when *they* are first loaded, so import this module before numpy/torch/jax
(or export the variables in the shell) for the pinning to take effect. The XLA_FLAGS value is
kept as specified, but with jaxlib 0.10.2 it is measured to change nothing: XLA's CPU runtime
still uses both cores for a 2048^3 matmul (cpu/wall ~1.7-1.95 with or without
``--xla_cpu_multi_thread_eigen=false``), and ``intra_op_parallelism_threads`` is not an XLA flag
(accepted and ignored). On this 2-CPU VM the thread count is bounded by the CPUs anyway.
torch is pinned with ``torch.set_num_threads(2)`` when a torch peer is built.
"""

from __future__ import annotations

import os

# Pin every runtime to the machine's 2 cores *before* numpy/torch/jax load their thread pools
# (they read these once, at load time). setdefault: an explicit shell setting wins.
N_THREADS = 2
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, str(N_THREADS))
os.environ.setdefault(
    "XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={N_THREADS}"
)
# Only the CPU backend exists here; saying so stops JAX probing for GPU/TPU plugins at start-up.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import importlib  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

Params = dict[str, NDArray[np.float32]]
"""Parameters: ``w{l}`` of shape [out, in] and ``b{l}`` of shape [out], l = 1..n_layers."""

ADAM_BETAS = (0.9, 0.999)  # PyTorch defaults
ADAM_EPS = 1e-8


class PeerUnavailable(RuntimeError):
    """The peer's package (torch, jax, numba) is not installed."""


# --------------------------------------------------------------------------------------------
# Workloads, parameters and data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Static description of one benchmark workload."""

    name: str
    sizes: tuple[int, ...]  # layer widths, input first
    hidden: str  # hidden activation: "sigmoid" | "relu"
    loss: str  # "half_sse_sigmoid" (sigmoid output, sum((o-t)^2)/2) | "ce" | "mse"
    optimizer: str  # "sgd" | "momentum" | "adam"
    lr: float
    batch_size: int
    n_samples: int
    unit: str  # what run(n) counts: "step" | "epoch"
    momentum: float = 0.0

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1


WORKLOADS: dict[str, Workload] = {
    "W1": Workload("W1", (2, 2, 2), "sigmoid", "half_sse_sigmoid", "sgd", 0.5, 1, 1, "step"),
    "W2": Workload("W2", (64, 128, 10), "relu", "ce", "adam", 1e-3, 32, 1797, "epoch"),
    "W3": Workload(
        "W3", (784, 512, 512, 10), "relu", "ce", "momentum", 0.01, 128, 512, "step", momentum=0.9
    ),
    "W5": Workload("W5", (10, 5, 1), "relu", "mse", "sgd", 0.01, 1, 256, "step"),
}


@dataclass(frozen=True)
class Data:
    """Training data in consumption order; see the module docstring for the batching contract.

    ``x``: float32 [N, in]. ``y``: int64 class labels [N] for cross-entropy workloads, float32
    targets [N, out] otherwise.
    """

    x: NDArray[np.float32]
    y: NDArray[Any]
    batch_size: int

    @property
    def n_batches(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def batch(self, k: int) -> tuple[NDArray[np.float32], NDArray[Any]]:
        s = slice(k * self.batch_size, (k + 1) * self.batch_size)
        return self.x[s], self.y[s]

    def batches(self) -> list[tuple[NDArray[np.float32], NDArray[Any]]]:
        return [self.batch(k) for k in range(self.n_batches)]


def init_params(workload: str, seed: int = 0) -> Params:
    """Initial parameters in PyTorch layout (weight [out, in], bias [out]), float32.

    W1 uses the fixed tutorial values; the others draw PyTorch's default ``nn.Linear`` init,
    U(-1/sqrt(in), 1/sqrt(in)) for weight and bias, from a numpy RNG so no framework is needed.
    """
    spec = WORKLOADS[workload]
    if workload == "W1":
        raw = {
            "w1": [[0.15, 0.20], [0.25, 0.30]],
            "b1": [0.35, 0.35],
            "w2": [[0.40, 0.45], [0.50, 0.55]],
            "b2": [0.60, 0.60],
        }
        return {k: np.asarray(v, dtype=np.float32) for k, v in raw.items()}
    rng = np.random.default_rng(seed)
    params: Params = {}
    for layer in range(spec.n_layers):
        fan_in, fan_out = spec.sizes[layer], spec.sizes[layer + 1]
        bound = 1.0 / math.sqrt(fan_in)
        params[f"w{layer + 1}"] = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        params[f"b{layer + 1}"] = rng.uniform(-bound, bound, fan_out).astype(np.float32)
    return params


def make_data(workload: str, seed: int = 0) -> Data:
    """The training data of a workload, identical for every peer (deterministic in ``seed``)."""
    spec = WORKLOADS[workload]
    rng = np.random.default_rng(seed + 1)  # +1: keep data draws independent of init_params'
    if workload == "W1":
        x = np.array([[0.05, 0.10]], dtype=np.float32)
        y: NDArray[Any] = np.array([[0.01, 0.99]], dtype=np.float32)
    elif workload == "W2":
        from sklearn.datasets import load_digits  # ships with scikit-learn: no download

        digits = load_digits()
        feats = digits.data.astype(np.float64)
        std = feats.std(axis=0)
        std[std == 0] = 1.0  # constant (always-blank) pixels: leave them at 0 after centring
        feats = (feats - feats.mean(axis=0)) / std
        perm = rng.permutation(len(feats))  # one fixed shuffle shared by all peers
        x = feats[perm].astype(np.float32)
        y = digits.target[perm].astype(np.int64)
    elif workload == "W3":
        # MNIST-shaped random data: timing does not depend on the values.
        x = rng.random((spec.n_samples, spec.sizes[0]), dtype=np.float32)
        y = rng.integers(0, spec.sizes[-1], spec.n_samples).astype(np.int64)
    elif workload == "W5":
        x = rng.standard_normal((spec.n_samples, spec.sizes[0])).astype(np.float32)
        w_true = rng.standard_normal((spec.sizes[0], 1))
        noise = 0.1 * rng.standard_normal((spec.n_samples, 1))
        y = (x @ w_true + noise).astype(np.float32)
    else:
        raise KeyError(workload)
    assert len(x) == spec.n_samples
    return Data(np.ascontiguousarray(x), np.ascontiguousarray(y), spec.batch_size)


def _stacked(data: Data) -> tuple[NDArray[np.float32], NDArray[Any]]:
    """x, y reshaped to [n_batches, B, ...]; only valid when every batch is full."""
    n, b = len(data.x), data.batch_size
    if n % b:
        raise ValueError("stacking needs N divisible by the batch size")
    return data.x.reshape(n // b, b, -1), data.y.reshape(n // b, b, *data.y.shape[1:])


# --------------------------------------------------------------------------------------------
# Harness helpers: FLOPs, peak, accuracy, timing
# --------------------------------------------------------------------------------------------


def step_flops(workload: str, input_grad: bool = True) -> int:
    """FLOPs of one training step (one epoch for epoch workloads): 3 * 2 * sum_l B*in*out.

    Forward, input-gradient and weight-gradient matmuls each cost 2*B*in*out; elementwise work
    and the optimizer update are ignored (they are O(params), not O(B*params)). No peer computes
    the gradient w.r.t. the data, so ``input_grad=False`` drops that 2*B*in*out of layer 1 (the
    work actually done: 20% less for W3).
    """
    spec = WORKLOADS[workload]
    rows = spec.batch_size if spec.unit == "step" else spec.n_samples
    pairs = list(zip(spec.sizes[:-1], spec.sizes[1:], strict=True))
    flops = 6 * rows * sum(a * b for a, b in pairs)
    return flops if input_grad else flops - 2 * rows * pairs[0][0] * pairs[0][1]


def matmul_rates(
    n: int = 2048, repeats: int = 10, backends: tuple[str, ...] = ("numpy", "scipy", "torch", "jax")
) -> dict[str, float]:
    """Best observed float32 n x n matmul rate (GFLOP/s) per backend, with the pinned threads.

    Backends that are not installed are left out. numpy/scipy use OpenBLAS, whose kernel choice
    follows ``OPENBLAS_CORETYPE``: this sandbox's shell exports ``OPENBLAS_CORETYPE=Haswell``
    (AVX2), which on the AVX-512 Zen 5 CPU gives about half of what XLA's or OpenBLAS's own
    SkylakeX kernels reach, so compare against the best backend as well as against BLAS.
    The sandbox's host is noisy (the same matmul varies ~2x from second to second), hence
    best-of-``repeats``; measuring again after the workloads and keeping the max also helps.
    """
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    kernels: dict[str, Callable[[], object]] = {}
    if "numpy" in backends:
        out = np.empty((n, n), dtype=np.float32)
        kernels["numpy"] = lambda: np.matmul(a, b, out=out)
    if "scipy" in backends:
        try:
            from scipy.linalg.blas import sgemm

            af, bf = np.asfortranarray(a), np.asfortranarray(b)  # sgemm copies C-order input
            kernels["scipy"] = lambda: sgemm(1.0, af, bf)
        except ImportError:
            pass
    if "torch" in backends:
        try:
            torch = _require("torch")
            torch.set_num_threads(N_THREADS)
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            kernels["torch"] = lambda: torch.mm(ta, tb)
        except PeerUnavailable:
            pass
    if "jax" in backends:
        try:
            jax = _require("jax")
            ja, jb = jax.numpy.asarray(a), jax.numpy.asarray(b)
            mm = jax.jit(lambda x, y: x @ y)
            kernels["jax"] = lambda: mm(ja, jb).block_until_ready()
        except PeerUnavailable:
            pass
    rates: dict[str, float] = {}
    for name, kernel in kernels.items():
        kernel()  # warm-up: thread pool start, page faults, jit compile
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            kernel()
            best = min(best, time.perf_counter() - t0)
        rates[name] = 2.0 * n**3 / best / 1e9
    return rates


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The machine's float32 matmul "peak" as specified: the best of numpy and scipy BLAS."""
    return max(matmul_rates(n, repeats, backends=("numpy", "scipy")).values())


def train_accuracy(workload: str, params: Params, data: Data) -> float:
    """Fraction of training samples whose argmax output equals the label (CE workloads)."""
    spec = WORKLOADS[workload]
    h = data.x.astype(np.float32)
    for layer in range(1, spec.n_layers + 1):
        h = h @ params[f"w{layer}"].T + params[f"b{layer}"]
        if layer < spec.n_layers:
            h = np.maximum(h, 0) if spec.hidden == "relu" else 1 / (1 + np.exp(-h))
    return float(np.mean(np.argmax(h, axis=1) == data.y))


def time_run(
    run: Callable[[int], float],
    n: int,
    repeats: int = 5,
    warmup: int = 1,
    reduce: Callable[[list[float]], float] = statistics.median,
) -> float:
    """Wall time (s) of ``run(n)``: ``reduce`` (median; ``min`` is steadier on a noisy host) of
    ``repeats`` calls, after ``warmup`` untimed calls (compilation, caches, thread pools)."""
    for _ in range(warmup):
        run(n)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(n)
        times.append(time.perf_counter() - t0)
    return reduce(times)


# --------------------------------------------------------------------------------------------
# Peer plumbing
# --------------------------------------------------------------------------------------------


@dataclass
class PeerRun:
    """A ready-to-time peer. ``run(n)`` trains n steps/epochs and returns the final loss.

    For step workloads the loss is that of the last step; for epoch workloads it is the mean
    per-sample loss over the last epoch (each batch's mean loss weighted by its size).
    ``params()`` returns a numpy copy of the current parameters (``init_params`` layout).
    """

    peer: str
    workload: str
    run: Callable[[int], float]
    params: Callable[[], Params]


PeerBuilder = Callable[[str, Params, Data], PeerRun]


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PeerUnavailable(f"{module} is not installed ({exc})") from exc


def _python_driver(
    spec: Workload, data: Data, step: Callable[[int], Any]
) -> Callable[[int], float]:
    """run(n) for peers whose loop lives in Python; ``step(k)`` trains on batch k, returns loss.

    Losses are converted to float only at the end so that JAX's asynchronous dispatch is not
    forced to synchronise on every step (the float() at the end is the synchronisation point).
    """
    nb = data.n_batches
    sizes = [len(data.batch(k)[0]) for k in range(nb)]
    cursor = 0

    def run_steps(n: int) -> float:
        nonlocal cursor
        loss = math.nan
        for _ in range(n):
            loss = step(cursor % nb)
            cursor += 1
        return float(loss)

    def run_epochs(n: int) -> float:
        losses: list[Any] = []
        for _ in range(n):
            losses = [step(k) for k in range(nb)]
        return sum(float(v) * s for v, s in zip(losses, sizes, strict=True)) / sum(sizes)

    return run_steps if spec.unit == "step" else run_epochs


# --------------------------------------------------------------------------------------------
# PyTorch eager
# --------------------------------------------------------------------------------------------


def torch_peer(workload: str, params: Params, data: Data) -> PeerRun:
    """PyTorch eager: the idiomatic ``model(x) -> loss.backward() -> opt.step()`` loop."""
    torch = _require("torch")
    torch.set_num_threads(N_THREADS)
    spec = WORKLOADS[workload]
    nn = torch.nn

    modules: list[Any] = []
    linears: list[Any] = []
    for layer in range(spec.n_layers):
        lin = nn.Linear(spec.sizes[layer], spec.sizes[layer + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(params[f"w{layer + 1}"]))
            lin.bias.copy_(torch.from_numpy(params[f"b{layer + 1}"]))
        linears.append(lin)
        modules.append(lin)
        if layer < spec.n_layers - 1:
            modules.append(nn.Sigmoid() if spec.hidden == "sigmoid" else nn.ReLU())
    if spec.loss == "half_sse_sigmoid":
        modules.append(nn.Sigmoid())
    model = nn.Sequential(*modules)

    loss_fn: Callable[[Any, Any], Any]
    if spec.loss == "half_sse_sigmoid":
        loss_fn = lambda o, t: ((o - t) ** 2).sum() / 2  # noqa: E731
    elif spec.loss == "ce":
        loss_fn = nn.CrossEntropyLoss()
    else:
        loss_fn = nn.MSELoss()

    if spec.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=spec.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum)

    # Tensors are made once, outside the timed loop (from_numpy shares memory: no copy).
    batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data.batches()]

    def step(k: int) -> Any:
        x, y = batches[k]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()  # detach: don't keep the autograd graph alive until run() ends

    def get_params() -> Params:
        out: Params = {}
        for layer, lin in enumerate(linears, start=1):
            out[f"w{layer}"] = lin.weight.detach().numpy().copy()
            out[f"b{layer}"] = lin.bias.detach().numpy().copy()
        return out

    return PeerRun("torch", workload, _python_driver(spec, data, step), get_params)


# --------------------------------------------------------------------------------------------
# JAX
# --------------------------------------------------------------------------------------------


def _jax_train_step(spec: Workload) -> tuple[Callable[..., Any], Callable[[Any], Any]]:
    """(train_step(p, s, x, y) -> (p, s, loss), init_opt_state(p)) written in plain jax.numpy.

    Optimizers are written out (no optax dependency) following PyTorch's formulas exactly.
    """
    jax = _require("jax")
    jnp = jax.numpy
    tree_map = jax.tree_util.tree_map
    n_layers = spec.n_layers

    def loss_fn(p: Any, x: Any, y: Any) -> Any:
        h = x
        for layer in range(1, n_layers + 1):
            h = h @ p[f"w{layer}"].T + p[f"b{layer}"]
            if layer < n_layers:
                h = jax.nn.sigmoid(h) if spec.hidden == "sigmoid" else jax.nn.relu(h)
        if spec.loss == "half_sse_sigmoid":
            return jnp.sum((jax.nn.sigmoid(h) - y) ** 2) / 2
        if spec.loss == "ce":
            logp = jax.nn.log_softmax(h, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return jnp.mean((h - y) ** 2)

    def init_opt(p: Any) -> Any:
        if spec.optimizer == "sgd":
            return {}
        if spec.optimizer == "momentum":
            return {"buf": tree_map(jnp.zeros_like, p)}
        zeros = tree_map(jnp.zeros_like, p)
        return {"m": zeros, "v": tree_map(jnp.zeros_like, p), "t": jnp.zeros((), jnp.int32)}

    lr, mu = spec.lr, spec.momentum
    b1, b2 = ADAM_BETAS
    # 1 - beta**t as -expm1(t*log1p(-(1-beta))): accurate in float32 where 1 - 0.999**t is not
    # (PyTorch computes the bias corrections in float64 on the host).
    log_b1, log_b2 = math.log1p(-(1 - b1)), math.log1p(-(1 - b2))

    def train_step(p: Any, s: Any, x: Any, y: Any) -> tuple[Any, Any, Any]:
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        if spec.optimizer == "sgd":
            return tree_map(lambda w, gw: w - lr * gw, p, g), s, loss
        if spec.optimizer == "momentum":
            # torch: buf = mu*buf + g (buf starts as g, same as from zeros); p -= lr*buf
            buf = tree_map(lambda b, gw: mu * b + gw, s["buf"], g)
            return tree_map(lambda w, b: w - lr * b, p, buf), {"buf": buf}, loss
        t = s["t"] + 1
        tf = t.astype(jnp.float32)
        step_size = lr / -jnp.expm1(tf * log_b1)
        bc2_sqrt = jnp.sqrt(-jnp.expm1(tf * log_b2))
        m = tree_map(lambda m_, gw: b1 * m_ + (1 - b1) * gw, s["m"], g)
        v = tree_map(lambda v_, gw: b2 * v_ + (1 - b2) * gw * gw, s["v"], g)
        p = tree_map(
            lambda w, m_, v_: w - step_size * m_ / (jnp.sqrt(v_) / bc2_sqrt + ADAM_EPS), p, m, v
        )
        return p, {"m": m, "v": v, "t": t}, loss

    return train_step, init_opt


def _jax_arrays(x: NDArray[Any], y: NDArray[Any]) -> tuple[Any, Any]:
    jnp = _require("jax.numpy")
    # int64 labels would be silently truncated to int32 anyway (x64 is off): do it explicitly.
    return jnp.asarray(x), jnp.asarray(y.astype(np.int32) if y.dtype.kind == "i" else y)


def _jax_params_to_numpy(p: Any) -> Params:
    return {k: np.array(v, dtype=np.float32) for k, v in p.items()}


def jax_jit_peer(workload: str, params: Params, data: Data) -> PeerRun:
    """JAX: one jitted train step per batch, called from a Python loop (async dispatch)."""
    jax = _require("jax")
    spec = WORKLOADS[workload]
    train_step, init_opt = _jax_train_step(spec)
    # Donating params/state lets XLA update them in place instead of allocating new buffers.
    step_fn = jax.jit(train_step, donate_argnums=(0, 1))
    batches = [_jax_arrays(x, y) for x, y in data.batches()]
    p = {k: jax.numpy.asarray(v) for k, v in params.items()}
    state = {"p": p, "s": init_opt(p)}

    def step(k: int) -> Any:
        x, y = batches[k]
        state["p"], state["s"], loss = step_fn(state["p"], state["s"], x, y)
        return loss

    return PeerRun(
        "jax_jit",
        workload,
        _python_driver(spec, data, step),
        lambda: _jax_params_to_numpy(state["p"]),
    )


def jax_fori_peer(workload: str, params: Params, data: Data) -> PeerRun:
    """JAX: all n steps (or n epochs of 57 batches) in one jitted ``lax.fori_loop`` call."""
    jax = _require("jax")
    jnp = jax.numpy
    lax = jax.lax
    spec = WORKLOADS[workload]
    train_step, init_opt = _jax_train_step(spec)
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state = {"p": p, "s": init_opt(p)}
    zero = jnp.zeros((), jnp.float32)

    if spec.unit == "step":
        xs, ys = _jax_arrays(*_stacked(data))
        nb = data.n_batches

        # Data are jit *arguments*, not closed-over constants: constants would be baked into the
        # executable and slow compilation. n is traced too, so any n reuses one executable.
        def steps(p: Any, s: Any, xs: Any, ys: Any, start: Any, n: Any) -> Any:
            def body(i: Any, carry: Any) -> Any:
                k = (start + i) % nb
                return train_step(carry[0], carry[1], xs[k], ys[k])

            return lax.fori_loop(0, n, body, (p, s, zero))

        steps_fn = jax.jit(steps, donate_argnums=(0, 1))
        cursor = 0

        def run(n: int) -> float:
            nonlocal cursor
            state["p"], state["s"], loss = steps_fn(state["p"], state["s"], xs, ys, cursor % nb, n)
            cursor += n
            return float(loss)

    else:
        # fori_loop needs one static batch shape: loop over the full batches, then do the short
        # tail batch (W2: 5 samples) as one extra step inside the same epoch body.
        b, n_total = data.batch_size, len(data.x)
        n_full = n_total // b
        full = Data(data.x[: n_full * b], data.y[: n_full * b], b)
        xf, yf = _jax_arrays(*_stacked(full))
        xt, yt = _jax_arrays(data.x[n_full * b :], data.y[n_full * b :])
        n_tail = n_total - n_full * b

        def epochs(p: Any, s: Any, xf: Any, yf: Any, xt: Any, yt: Any, n: Any) -> Any:
            def batch(i: Any, carry: Any) -> Any:
                p, s, total = carry
                p, s, loss = train_step(p, s, xf[i], yf[i])
                return p, s, total + loss * b

            def epoch(_: Any, carry: Any) -> Any:
                p, s, total = lax.fori_loop(0, n_full, batch, (carry[0], carry[1], zero))
                if n_tail:  # static
                    p, s, loss = train_step(p, s, xt, yt)
                    total = total + loss * n_tail
                return p, s, total / n_total

            return lax.fori_loop(0, n, epoch, (p, s, zero))

        epochs_fn = jax.jit(epochs, donate_argnums=(0, 1))

        def run(n: int) -> float:
            state["p"], state["s"], loss = epochs_fn(state["p"], state["s"], xf, yf, xt, yt, n)
            return float(loss)

    return PeerRun("jax_fori", workload, run, lambda: _jax_params_to_numpy(state["p"]))


# --------------------------------------------------------------------------------------------
# Hand-written Numba reference
# --------------------------------------------------------------------------------------------

# Integer codes: numba kernels branch on these (outside inner loops) instead of on strings.
_ACT_NONE, _ACT_SIGMOID, _ACT_RELU = 0, 1, 2
_LOSS_HALF_SSE_SIGMOID, _LOSS_CE, _LOSS_MSE = 0, 1, 2
_OPT_SGD, _OPT_MOMENTUM, _OPT_ADAM = 0, 1, 2
# Below this many multiply-adds a matmul is done with explicit loops: calling BLAS costs more
# than the arithmetic for the 2x2 / 10x5 layers of W1 and W5.
_SMALL_MATMUL = 4096

try:
    from numba import njit

    _HAVE_NUMBA = True
except ImportError:
    _HAVE_NUMBA = False

if _HAVE_NUMBA:
    # Defined at module level (not in a closure) so that cache=True can cache them on disk.
    #
    # Design notes (why the kernels look the way they do):
    # * One kernel per depth (_nb_train2 / _nb_train3) with every array a plain argument. Numba
    #   elides refcounting for arguments, but each read of an array out of a tuple costs an
    #   atomic incref/decref pair (~20 ns); on W1 a tuple-of-layers version spent ~70% of its
    #   time on that. For the same reason the helpers are inline="always": a non-inlined call
    #   keeps incref/decref pairs around each array argument (W1: 0.8 -> 0.35 us/step).
    # * Biases are stored as [1, out] so one 2-D update routine serves every tensor.
    # * cfg = [hidden act, output act, loss, optimizer] codes; hp = [lr, momentum, beta1,
    #   beta2, eps] as float32 so the elementwise math stays in float32 like the other peers.

    @njit(cache=True)
    def _nb_blas_dot(a, b, out):  # type: ignore[no-untyped-def]
        """out = a @ b via BLAS. A separate, non-inlined function on purpose: inlining np.dot's
        large body into the small-matmul callers measurably slowed their explicit-loop path."""
        np.dot(a, b, out)

    @njit(cache=True, inline="always")
    def _nb_mm_nt(a, w, out):  # type: ignore[no-untyped-def]
        """out[M,N] = a[M,K] @ w[N,K].T  (forward)."""
        m, k_dim = a.shape
        n = w.shape[0]
        if m * n * k_dim <= _SMALL_MATMUL:
            for i in range(m):
                for j in range(n):
                    acc = np.float32(0.0)
                    for k in range(k_dim):
                        acc += a[i, k] * w[j, k]
                    out[i, j] = acc
        else:
            _nb_blas_dot(a, w.T, out)

    @njit(cache=True, inline="always")
    def _nb_mm_tn(d, a, out):  # type: ignore[no-untyped-def]
        """out[N,K] = d[M,N].T @ a[M,K]  (weight gradient)."""
        m, n = d.shape
        k_dim = a.shape[1]
        if m * n * k_dim <= _SMALL_MATMUL:
            for j in range(n):
                for k in range(k_dim):
                    acc = np.float32(0.0)
                    for i in range(m):
                        acc += d[i, j] * a[i, k]
                    out[j, k] = acc
        else:
            _nb_blas_dot(d.T, a, out)

    @njit(cache=True, inline="always")
    def _nb_mm_nn(d, w, out):  # type: ignore[no-untyped-def]
        """out[M,K] = d[M,N] @ w[N,K]  (input gradient)."""
        m, n = d.shape
        k_dim = w.shape[1]
        if m * n * k_dim <= _SMALL_MATMUL:
            for i in range(m):
                for k in range(k_dim):
                    acc = np.float32(0.0)
                    for j in range(n):
                        acc += d[i, j] * w[j, k]
                    out[i, k] = acc
        else:
            _nb_blas_dot(d, w, out)

    @njit(cache=True, inline="always")
    def _nb_forward(inp, w, b, h, act):  # type: ignore[no-untyped-def]
        """h = act(inp @ w.T + b), written into the preallocated h."""
        _nb_mm_nt(inp, w, h)
        m, n = h.shape
        one = np.float32(1.0)
        if act == _ACT_SIGMOID:
            for i in range(m):
                for j in range(n):
                    h[i, j] = one / (one + np.exp(-(h[i, j] + b[0, j])))
        elif act == _ACT_RELU:
            for i in range(m):
                for j in range(n):
                    h[i, j] = max(h[i, j] + b[0, j], np.float32(0.0))
        else:
            for i in range(m):
                for j in range(n):
                    h[i, j] += b[0, j]

    @njit(cache=True, inline="always")
    def _nb_loss_backward(o, y, d, kind):  # type: ignore[no-untyped-def]
        """Loss of output o against target y (one-hot for CE); writes dLoss/d(pre-activation)."""
        m, n = o.shape
        loss = np.float32(0.0)
        one = np.float32(1.0)
        if kind == _LOSS_HALF_SSE_SIGMOID:  # o is already sigmoid(z)
            for i in range(m):
                for j in range(n):
                    e = o[i, j] - y[i, j]
                    loss += e * e
                    d[i, j] = e * o[i, j] * (one - o[i, j])
            return loss * np.float32(0.5)
        if kind == _LOSS_CE:  # o is logits; mean over the batch
            inv_m = one / np.float32(m)
            for i in range(m):
                mx = o[i, 0]
                for j in range(1, n):
                    mx = max(mx, o[i, j])
                s = np.float32(0.0)
                for j in range(n):
                    d[i, j] = np.exp(o[i, j] - mx)
                    s += d[i, j]
                lse = mx + np.log(s)
                for j in range(n):
                    loss += y[i, j] * (lse - o[i, j])
                    d[i, j] = (d[i, j] / s - y[i, j]) * inv_m
            return loss * inv_m
        scale = np.float32(2.0) / np.float32(m * n)  # MSE, mean over all elements
        for i in range(m):
            for j in range(n):
                e = o[i, j] - y[i, j]
                loss += e * e
                d[i, j] = scale * e
        return loss / np.float32(m * n)

    @njit(cache=True, inline="always")
    def _nb_param_grads(d, inp, gw, gb):  # type: ignore[no-untyped-def]
        """gw = d.T @ inp, gb = column sums of d."""
        _nb_mm_tn(d, inp, gw)
        for j in range(d.shape[1]):
            acc = np.float32(0.0)
            for i in range(d.shape[0]):
                acc += d[i, j]
            gb[0, j] = acc

    @njit(cache=True, inline="always")
    def _nb_backprop(d, w, h_prev, d_prev, act):  # type: ignore[no-untyped-def]
        """d_prev = (d @ w) * act'(.), with act' computed from h_prev = act(.)."""
        _nb_mm_nn(d, w, d_prev)
        m, n = d_prev.shape
        one = np.float32(1.0)
        if act == _ACT_SIGMOID:
            for i in range(m):
                for j in range(n):
                    d_prev[i, j] *= h_prev[i, j] * (one - h_prev[i, j])
        else:  # ReLU
            for i in range(m):
                for j in range(n):
                    if h_prev[i, j] <= 0:
                        d_prev[i, j] = 0.0

    @njit(cache=True, inline="always")
    def _nb_adam_scales(cfg, hp, t_adam):  # type: ignore[no-untyped-def]
        """(step_size, sqrt(bias_correction2)); bias corrections in float64 like PyTorch."""
        if cfg[3] != _OPT_ADAM:
            return hp[0], np.float32(1.0)
        t_adam[0] += 1
        bc1 = 1.0 - np.float64(hp[2]) ** t_adam[0]
        bc2 = 1.0 - np.float64(hp[3]) ** t_adam[0]
        return np.float32(hp[0] / bc1), np.float32(math.sqrt(bc2))

    @njit(cache=True, inline="always")
    def _nb_update(p, g, s1, s2, cfg, hp, step_size, bc2_sqrt):  # type: ignore[no-untyped-def]
        """One optimizer update of a 2-D tensor, PyTorch's formulas (s1 = buf or m, s2 = v)."""
        lr, mu, beta1, beta2, eps = hp[0], hp[1], hp[2], hp[3], hp[4]
        one = np.float32(1.0)
        for i in range(p.shape[0]):
            for j in range(p.shape[1]):
                if cfg[3] == _OPT_SGD:
                    p[i, j] -= lr * g[i, j]
                elif cfg[3] == _OPT_MOMENTUM:
                    s1[i, j] = mu * s1[i, j] + g[i, j]
                    p[i, j] -= lr * s1[i, j]
                else:
                    s1[i, j] = beta1 * s1[i, j] + (one - beta1) * g[i, j]
                    s2[i, j] = beta2 * s2[i, j] + (one - beta2) * g[i, j] * g[i, j]
                    p[i, j] -= step_size * s1[i, j] / (np.sqrt(s2[i, j]) / bc2_sqrt + eps)

    @njit(cache=True)
    def _nb_train2(  # type: ignore[no-untyped-def]
        n, start, xs, ys,
        w1, b1, w2, b2, gw1, gb1, gw2, gb2,
        mw1, mb1, mw2, mb2, vw1, vb1, vw2, vb2,
        h1, h2, d1, d2, t_adam, cfg, hp,
    ):  # fmt: skip
        """n steps of a 2-layer MLP; step i uses batch (start+i) % len(xs).

        h*: layer outputs (post-activation); d*: dLoss/d(pre-activation); m*/v*: optimizer
        state. Returns (loss of the last step, sum over steps of loss * batch size).
        """
        nb, bsz = xs.shape[0], xs.shape[1]
        last = np.float32(0.0)
        total = 0.0
        for it in range(n):
            x = xs[(start + it) % nb]
            y = ys[(start + it) % nb]
            _nb_forward(x, w1, b1, h1, cfg[0])
            _nb_forward(h1, w2, b2, h2, cfg[1])
            last = _nb_loss_backward(h2, y, d2, cfg[2])
            _nb_param_grads(d2, h1, gw2, gb2)
            _nb_backprop(d2, w2, h1, d1, cfg[0])  # uses w2 before its update
            _nb_param_grads(d1, x, gw1, gb1)
            ss, bc2 = _nb_adam_scales(cfg, hp, t_adam)
            _nb_update(w1, gw1, mw1, vw1, cfg, hp, ss, bc2)
            _nb_update(b1, gb1, mb1, vb1, cfg, hp, ss, bc2)
            _nb_update(w2, gw2, mw2, vw2, cfg, hp, ss, bc2)
            _nb_update(b2, gb2, mb2, vb2, cfg, hp, ss, bc2)
            total += last * bsz
        return last, total

    @njit(cache=True)
    def _nb_train3(  # type: ignore[no-untyped-def]
        n, start, xs, ys,
        w1, b1, w2, b2, w3, b3, gw1, gb1, gw2, gb2, gw3, gb3,
        mw1, mb1, mw2, mb2, mw3, mb3, vw1, vb1, vw2, vb2, vw3, vb3,
        h1, h2, h3, d1, d2, d3, t_adam, cfg, hp,
    ):  # fmt: skip
        """n steps of a 3-layer MLP; as _nb_train2 with one more hidden layer."""
        nb, bsz = xs.shape[0], xs.shape[1]
        last = np.float32(0.0)
        total = 0.0
        for it in range(n):
            x = xs[(start + it) % nb]
            y = ys[(start + it) % nb]
            _nb_forward(x, w1, b1, h1, cfg[0])
            _nb_forward(h1, w2, b2, h2, cfg[0])
            _nb_forward(h2, w3, b3, h3, cfg[1])
            last = _nb_loss_backward(h3, y, d3, cfg[2])
            _nb_param_grads(d3, h2, gw3, gb3)
            _nb_backprop(d3, w3, h2, d2, cfg[0])
            _nb_param_grads(d2, h1, gw2, gb2)
            _nb_backprop(d2, w2, h1, d1, cfg[0])
            _nb_param_grads(d1, x, gw1, gb1)
            ss, bc2 = _nb_adam_scales(cfg, hp, t_adam)
            _nb_update(w1, gw1, mw1, vw1, cfg, hp, ss, bc2)
            _nb_update(b1, gb1, mb1, vb1, cfg, hp, ss, bc2)
            _nb_update(w2, gw2, mw2, vw2, cfg, hp, ss, bc2)
            _nb_update(b2, gb2, mb2, vb2, cfg, hp, ss, bc2)
            _nb_update(w3, gw3, mw3, vw3, cfg, hp, ss, bc2)
            _nb_update(b3, gb3, mb3, vb3, cfg, hp, ss, bc2)
            total += last * bsz
        return last, total


def numba_hand_peer(workload: str, params: Params, data: Data) -> PeerRun:
    """Hand-written Numba: the whole run(n) loop is one compiled call over preallocated buffers."""
    if not _HAVE_NUMBA:
        raise PeerUnavailable("numba is not installed")
    spec = WORKLOADS[workload]
    n_layers = spec.n_layers
    kernels = {2: _nb_train2, 3: _nb_train3}
    if n_layers not in kernels:
        raise ValueError(f"numba_hand has kernels for 2 and 3 layers, not {n_layers}")
    kernel = kernels[n_layers]
    f32 = np.float32

    # [w1, b1, w2, b2, ...], biases as [1, out]; copies, because the kernel updates in place.
    tensors = []
    for i in range(1, n_layers + 1):
        tensors += [params[f"w{i}"].copy(), params[f"b{i}"].reshape(1, -1).copy()]
    grads = [np.zeros_like(t) for t in tensors]
    state1 = [np.zeros_like(t) for t in tensors]  # momentum buffer / Adam m
    state2 = [np.zeros_like(t) for t in tensors]  # Adam v
    t_adam = np.zeros(1, dtype=np.int64)
    acts = {"sigmoid": _ACT_SIGMOID, "relu": _ACT_RELU}
    losses = {"half_sse_sigmoid": _LOSS_HALF_SSE_SIGMOID, "ce": _LOSS_CE, "mse": _LOSS_MSE}
    opts = {"sgd": _OPT_SGD, "momentum": _OPT_MOMENTUM, "adam": _OPT_ADAM}
    out_act = _ACT_SIGMOID if spec.loss == "half_sse_sigmoid" else _ACT_NONE
    cfg = np.array(
        [acts[spec.hidden], out_act, losses[spec.loss], opts[spec.optimizer]], dtype=np.int64
    )
    hp = np.array([spec.lr, spec.momentum, *ADAM_BETAS, ADAM_EPS], dtype=f32)

    def targets(y: NDArray[Any]) -> NDArray[np.float32]:
        # CE labels become one-hot rows so one kernel signature serves every workload.
        return np.eye(spec.sizes[-1], dtype=f32)[y] if spec.loss == "ce" else y.astype(f32)

    def buffers(bsz: int) -> list[NDArray[np.float32]]:
        hs = [np.zeros((bsz, s), f32) for s in spec.sizes[1:]]
        return hs + [np.zeros_like(h) for h in hs]

    def train(n: int, start: int, xs: Any, ys: Any, bufs: list[Any]) -> tuple[float, float]:
        return kernel(  # type: ignore[no-any-return]
            n, start, xs, ys, *tensors, *grads, *state1, *state2, *bufs, t_adam, cfg, hp
        )

    b, n_total = data.batch_size, len(data.x)
    n_full = n_total // b
    xf, yf = _stacked(Data(data.x[: n_full * b], targets(data.y[: n_full * b]), b))
    bufs_full = buffers(b)
    n_tail = n_total - n_full * b
    xt = data.x[n_full * b :][None]  # the short last batch as a stack of one
    yt = targets(data.y[n_full * b :])[None]
    bufs_tail = buffers(n_tail) if n_tail else bufs_full

    if spec.unit == "step":
        if n_tail:
            raise ValueError("step workloads need N divisible by the batch size")
        cursor = 0

        def run(n: int) -> float:
            nonlocal cursor
            last, _ = train(n, cursor % n_full, xf, yf, bufs_full)
            cursor += n
            return float(last)

    else:

        def run(n: int) -> float:
            total = 0.0
            for _ in range(n):
                _, total = train(n_full, 0, xf, yf, bufs_full)
                if n_tail:
                    total += train(1, 0, xt, yt, bufs_tail)[1]
            return total / n_total

    def get_params() -> Params:
        out: Params = {}
        for i in range(n_layers):
            out[f"w{i + 1}"] = tensors[2 * i].copy()
            out[f"b{i + 1}"] = tensors[2 * i + 1].reshape(-1).copy()
        return out

    return PeerRun("numba_hand", workload, run, get_params)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

PEERS: dict[str, PeerBuilder] = {
    "torch": torch_peer,
    "jax_jit": jax_jit_peer,
    "jax_fori": jax_fori_peer,
    "numba_hand": numba_hand_peer,
}


def build_peer(peer: str, workload: str, params: Params, data: Data) -> PeerRun:
    """Build a peer by name; raises ``PeerUnavailable`` if its package is missing."""
    return PEERS[peer](workload, params, data)


def try_build_peer(peer: str, workload: str, params: Params, data: Data) -> PeerRun | None:
    """Like ``build_peer`` but returns None when the peer's package is missing."""
    try:
        return build_peer(peer, workload, params, data)
    except PeerUnavailable:
        return None


def max_rel_diff(a: Params, b: Params) -> float:
    """Largest per-tensor ``max|a-b| / max|b|`` (scale-relative, robust to near-zero entries)."""
    return max(
        float(np.max(np.abs(a[k] - b[k])) / max(float(np.max(np.abs(b[k]))), 1e-12)) for k in b
    )


# --------------------------------------------------------------------------------------------
# Self-check: python benchmarks/peers.py
# --------------------------------------------------------------------------------------------

# workload -> (units trained before the agreement check, agreement tolerance, units per timed
# call, timed calls). Tolerances are on max_rel_diff; observed: ~1e-7 everywhere, ~6e-7 for a
# full W2 epoch of Adam (whose m/sqrt(v) amplifies float32 rounding of tiny gradients).
_SELF_CHECK: dict[str, tuple[int, float, int, int]] = {
    "W1": (10, 1e-5, 2000, 5),
    "W2": (1, 1e-4, 1, 5),
    "W3": (3, 1e-4, 10, 3),
    "W5": (20, 1e-4, 2000, 5),
}


def _self_check() -> bool:
    load = os.getloadavg()[0]
    if load > 0.5:  # with 2-thread pools on 2 cores, any other job skews timings badly
        print(f"warning: 1-min load average {load:.2f}; timings will be noisy")
    rates = matmul_rates()
    ok = True
    w3_rates: dict[str, float] = {}
    for workload, (n_check, tol, n_time, repeats) in _SELF_CHECK.items():
        spec = WORKLOADS[workload]
        params, data = init_params(workload), make_data(workload)
        print(f"\n{workload} {spec.sizes} {spec.optimizer} B={spec.batch_size} (per {spec.unit})")
        ref: Params | None = None
        for name in PEERS:
            t0 = time.perf_counter()
            try:
                peer = build_peer(name, workload, params, data)
            except PeerUnavailable as exc:
                print(f"  {name:<11} skipped: {exc}")
                continue
            loss = peer.run(n_check)  # includes compilation for jax/numba
            first = time.perf_counter() - t0
            final = peer.params()
            diff = 0.0 if ref is None else max_rel_diff(final, ref)
            ref = final if ref is None else ref
            agree = diff <= tol
            ok &= agree
            seconds = time_run(peer.run, n_time, repeats=repeats) / n_time
            extra = ""
            if workload == "W3":
                w3_rates[name] = step_flops(workload) / seconds / 1e9
                extra = f"  {w3_rates[name]:.0f} GFLOP/s"
            if workload == "W2":
                done = n_check + n_time * (repeats + 1)
                acc = train_accuracy(workload, peer.params(), data)
                extra = f"  train acc {acc:.4f} after {done} epochs"
            print(
                f"  {name:<11} loss@{n_check}={loss:.6f} diff={diff:.1e} "
                f"{'ok' if agree else 'MISMATCH'} {seconds * 1e6:9.1f} us/{spec.unit}"
                f"  (build+first {first:.1f}s){extra}"
            )

    # Peak: best of a measurement before and after the workloads (the host is noisy).
    rates = {k: max(v, rates[k]) for k, v in matmul_rates().items()}
    blas_peak = max(rates[k] for k in ("numpy", "scipy") if k in rates)
    best_peak = max(rates.values())
    shown = ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
    print(f"\nfloat32 2048^3 matmul GFLOP/s ({N_THREADS} threads): {shown}")
    print(f"  (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '<unset>')})")
    for name, rate in w3_rates.items():
        print(
            f"  W3 {name:<11} {rate:4.0f} GFLOP/s = {rate / blas_peak:4.0%} of BLAS peak, "
            f"{rate / best_peak:4.0%} of best backend"
        )
    print("\nall peers agree" if ok else "\nMISMATCH between peers")
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if _self_check() else 1)
