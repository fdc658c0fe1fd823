"""Runs the PyTorch programs of examples/pytorch_style/ in one interpreter, under real PyTorch
or under symbp standing in for it, and writes what each printed (or the error that stopped
it) as JSON. Used by tests/test_pytorch_style.py:

    python tests/pytorch_style_runner.py torch|symbp OUT.json PROGRAM.py ...

Under ``symbp`` the programs stay unchanged PyTorch code: before the first one runs,
``torch`` and its submodules in ``sys.modules`` are symbp's modules, so ``import torch``,
``from torch import nn, optim``, ``import torch.nn.functional as F`` and ``from
torch.utils.data import ...`` bind symbp's (the only change a user would make by hand).
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import traceback
import warnings


def point_torch_at_symbp() -> None:
    import symbp
    import symbp.nn.functional
    import symbp.optim.lr_scheduler
    import symbp.utils.data

    aliases = {
        "torch": symbp,
        "torch.nn": symbp.nn,
        "torch.nn.functional": symbp.nn.functional,
        "torch.nn.init": symbp.nn.init,
        "torch.optim": symbp.optim,
        "torch.optim.lr_scheduler": symbp.optim.lr_scheduler,
        "torch.utils": symbp.utils,
        "torch.utils.data": symbp.utils.data,
    }
    autograd = getattr(symbp, "autograd", None)  # torch.autograd: being added on another branch
    if autograd is not None:
        aliases["torch.autograd"] = autograd
    sys.modules.update(aliases)


def run(program: str) -> dict[str, str | None]:
    out = io.StringIO()
    error = None
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            runpy.run_path(program, run_name="__main__")
        except BaseException as exc:  # reported: one failure per program, not the run
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            error += "\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:])
    return {"stdout": out.getvalue(), "error": error}


def main(argv: list[str]) -> None:
    library, out_path, programs = argv[0], argv[1], argv[2:]
    if library == "symbp":
        point_torch_at_symbp()
    elif library != "torch":
        raise SystemExit(f"pytorch_style_runner: library must be torch or symbp, got {library!r}")
    results = {program: run(program) for program in programs}
    with open(out_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1:])
