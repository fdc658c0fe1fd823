"""The library kernels (compiler/lower/conv_kernels.py) against NumPy references: convolutions and
the register-tiled matrix product.

The reference is written here from the definition, one tap at a time:
y[n,o,oy,ox] = Σ_{c,p,q} x_pad[n, c, oy*sh + p*dh, ox*sw + q*dw] · w[o,c,p,q]; its two gradients
are the adjoints of that sum, accumulated the same way. Shapes cover batch 1, channel counts
that are not whole vector blocks, output widths that are not whole tiles, strides, dilations
and asymmetric padding.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import everyday

from symbp.compiler.lower import conv, conv_kernels


def pad(x, top, bottom, left, right):
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def out_size(size, k, stride, lo, hi, dil):
    return (size + lo + hi - dil * (k - 1) - 1) // stride + 1


def reference(x, w, stride, padding, dilation):
    """y, and a function ct -> (x̄, w̄), of conv2d by summing taps."""
    (sh, sw), ((top, bottom), (left, right)), (dh, dw) = stride, padding, dilation
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = out_size(h, kh, sh, top, bottom, dh)
    wo = out_size(wd, kw, sw, left, right, dw)
    xp = pad(x, top, bottom, left, right)

    def window(p, q):
        return (slice(None), slice(None), slice(p * dh, p * dh + (ho - 1) * sh + 1, sh),
                slice(q * dw, q * dw + (wo - 1) * sw + 1, sw))  # fmt: skip

    y = np.zeros((n, o, ho, wo))
    for p in range(kh):
        for q in range(kw):
            y += np.einsum("nchw,oc->nohw", xp[window(p, q)], w[:, :, p, q])

    def grads(ct):
        xbar = np.zeros_like(xp, dtype=np.float64)
        wbar = np.zeros(w.shape)
        for p in range(kh):
            for q in range(kw):
                xbar[window(p, q)] += np.einsum("nohw,oc->nchw", ct, w[:, :, p, q])
                wbar[:, :, p, q] = np.einsum("nohw,nchw->oc", ct, xp[window(p, q)])
        return xbar[:, :, top : top + h, left : left + wd], wbar

    return y, grads


CASES = [
    # n, c, h, w, o, (kh, kw), stride, ((top, bottom), (left, right)), dilation
    (1, 3, 8, 8, 16, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    (2, 5, 13, 11, 20, (3, 3), (2, 2), ((1, 1), (1, 1)), (2, 2)),
    (2, 7, 9, 9, 33, (5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),
    (2, 16, 7, 7, 48, (3, 3), (3, 3), ((3, 3), (3, 3)), (3, 2)),
    (3, 4, 6, 9, 5, (2, 3), (1, 2), ((0, 1), (1, 0)), (1, 1)),
    (2, 3, 5, 7, 4, (3, 1), (2, 1), ((0, 0), (0, 0)), (1, 1)),
    (4, 32, 8, 8, 64, (5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),
]


# Every (case, dtype, variant): variant "_narrow" is 2 vectors of channels per tile, "" 1. Each
# kernel family compiles once per machine (~23 s of CPU from an empty kernel cache, a third of
# the everyday set; Numba's cache keeps it): all rows are in the full suite only. The everyday
# set still compiles and checks matmul_small below.
KERNEL_ROWS = [
    (case, dtype, variant)
    for case in CASES
    for dtype in (np.float64, np.float32)
    for variant in ("", "_narrow")
]


@pytest.mark.parametrize(
    "case, dtype, variant",
    everyday(
        KERNEL_ROWS,
        keep=[],
        ids=lambda r: "-".join(
            ["x".join(map(str, r[0][:5])), np.dtype(r[1]).name, r[2].strip("_") or "wide"]
        ),
    ),
)
def test_kernels_match_the_definition(case, dtype, variant):
    n, c, h, wd, o, (kh, kw), stride, padding, dilation = case
    rng = np.random.default_rng(sum(case[:5]))
    x = rng.standard_normal((n, c, h, wd))
    w = rng.standard_normal((o, c, kh, kw))
    y, grads = reference(x, w, stride, padding, dilation)
    ct = rng.standard_normal(y.shape)
    xbar, wbar = grads(ct)
    kt = ("f32" if dtype == np.float32 else "f64") + variant
    (sh, sw), ((top, _), (left, _)), (dh, dw) = stride, padding, dilation
    geometry = (sh, sw, top, left, dh, dw)
    tol = 1e-5 if dtype == np.float32 else 1e-12

    def close(got, want):
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)

    got = np.full(y.shape, np.nan, dtype)
    getattr(conv_kernels, f"conv2d_forward_{kt}")(x.astype(dtype), w.astype(dtype), got, *geometry)
    close(got, y)
    got = np.full(w.shape, np.nan, dtype)
    getattr(conv_kernels, f"conv2d_weight_grad_{kt}")(
        x.astype(dtype), ct.astype(dtype), got, *geometry
    )
    close(got, wbar)
    if top <= dh * (kh - 1) and left <= dw * (kw - 1):  # the emitter's condition for this kernel
        got = np.full(x.shape, np.nan, dtype)
        getattr(conv_kernels, f"conv2d_input_grad_{kt}")(
            ct.astype(dtype), w.astype(dtype), got, *geometry
        )
        close(got, xbar)


MATMUL_SIZES = [(1, 1, 1), (5, 3, 7), (8, 16, 32), (33, 17, 40), (128, 300, 70)]
MATMUL_ROWS = [
    (*size, dtype, kernel)
    for kernel in ("matmul_small", "matmul", "matmul_small_narrow")
    for dtype in (np.float64, np.float32)
    for size in MATMUL_SIZES
]  # everyday: matmul_small in float64 (one kernel), every size


@pytest.mark.parametrize(
    "m, k, n, dtype, kernel",
    everyday(
        MATMUL_ROWS,
        keep=range(len(MATMUL_SIZES)),
        ids=lambda r: "-".join([f"{r[0]}x{r[1]}x{r[2]}", np.dtype(r[3]).name, r[4]]),
    ),
)
def test_tiled_matmul_matches_numpy(m, k, n, dtype, kernel):
    """op(a) @ op(b) for every pair of transposes; sizes that are and are not whole tiles."""
    rng = np.random.default_rng(m + k + n)
    kt = "f32" if dtype == np.float32 else "f64"
    name = kernel.replace("_narrow", f"_{kt}_narrow") if "narrow" in kernel else f"{kernel}_{kt}"
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for ta in (False, True):
        for tb in (False, True):
            a = rng.standard_normal((k, m) if ta else (m, k))
            b = rng.standard_normal((n, k) if tb else (k, n))
            want = (a.T if ta else a) @ (b.T if tb else b)
            got = np.full((m, n), np.nan, dtype)
            getattr(conv_kernels, name)(a.astype(dtype), ta, b.astype(dtype), tb, got)
            np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())


def test_generated_file_is_up_to_date():
    """conv_kernels.py is what ``python -m symbp.compiler.lower.conv`` writes from conv.py."""
    assert conv.TARGET.read_text() == conv.source()


@pytest.mark.parametrize("env", [{}, {"NUMBA_THREADING_LAYER": "workqueue"}])
def test_parallel_regions_run_on_openmp_unless_numba_is_told(env):
    """symbp prefers Numba's OpenMP layer once it loads its kernels (not on import), and MKL
    (when symbp loads it) on the same runtime; a user's choice wins."""
    pytest.importorskip("numba.np.ufunc.omppool")  # libgomp is there
    script = (
        "import os, numpy as np, numba, symbp\n"
        "from symbp.compiler.lower.conv_kernels import conv2d_forward_f64, need\n"
        "need('matmul_f64')\n"
        "x, w, out = np.ones((2, 1, 4, 4)), np.ones((3, 1, 3, 3)), np.empty((2, 3, 2, 2))\n"
        "conv2d_forward_f64(x, w, out, 1, 1, 0, 0, 1, 1)\n"
        "assert (out == 9).all()\n"
        "print(numba.threading_layer(), os.environ.get('MKL_THREADING_LAYER'))\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_THREADING", "MKL_"))}
    p = subprocess.run([sys.executable, "-c", script], env={**base, **env},
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    layer, mkl = p.stdout.split()
    from symbp.compiler.lower import support

    gnu = "GNU" if support.MKL else "None"
    assert (layer, mkl) == (("workqueue", "None") if env else ("omp", gnu))


def test_products_called_by_symbol_equal_the_kernels():
    """``need`` registers a product kernel's C entry point; ``call_<name>`` reaches it by
    symbol, with its transposes, one core or all."""
    names = ("matmul_small_f64", "matmul_f64")
    assert conv_kernels.need(*names) == names
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((20, 9)), rng.standard_normal((33, 20))
    for name in names:
        got = np.full((9, 33), np.nan)
        getattr(conv_kernels, f"call_{name}")(a, True, b, True, got)
        want = a.T @ b.T
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


AVX2_SCRIPT = """
import numpy as np
from symbp.compiler.lower import conv_kernels as ck, simd
print(simd.VECTOR_BYTES, simd.MR, simd.LANES_F32, simd.LANES_F64)
rng = np.random.default_rng(5)
for dt in (np.float32, np.float64):
    kt = "f32" if dt == np.float32 else "f64"
    a, b = rng.standard_normal((13, 20)), rng.standard_normal((37, 20))
    for kernel in ("matmul_small", "matmul"):
        got = np.full((13, 37), np.nan, dt)
        getattr(ck, f"{kernel}_{kt}")(a.astype(dt), False, b.astype(dt), True, got)
        err = np.abs(got - a @ b.T).max() / np.abs(a @ b.T).max()
        assert err < (1e-5 if dt == np.float32 else 1e-12), (kernel, kt, err)
    x, w = rng.standard_normal((3, 5, 9, 11)), rng.standard_normal((19, 5, 3, 3))
    want = np.zeros((3, 19, 7, 9))
    for p in range(3):
        for q in range(3):
            want += np.einsum("nchw,oc->nohw", x[:, :, p : p + 7, q : q + 9], w[:, :, p, q])
    got = np.full(want.shape, np.nan, dt)
    getattr(ck, f"conv2d_forward_{kt}")(x.astype(dt), w.astype(dt), got, 1, 1, 0, 0, 1, 1)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < (1e-5 if dt == np.float32 else 1e-12), ("conv", kt, err)
"""


@pytest.mark.slow
def test_kernels_shaped_for_avx2_registers_where_the_code_has_no_avx512(tmp_path):
    """With Numba generating AVX2 code only (a CPU name and its features, as a laptop without
    AVX-512 has), vectors are 256 bits, tiles 6 rows x 2 vectors (12 accumulators of 16
    registers), and the products and convolutions still equal their definitions."""
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx2,+fma",
           "SYMBP_CACHE_DIR": str(tmp_path)}  # fmt: skip
    p = subprocess.run([sys.executable, "-c", AVX2_SCRIPT], env=env, capture_output=True,
                       text=True, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.split() == ["32", "6", "8", "4"]
