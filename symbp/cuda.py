"""``torch.cuda`` on a CPU-only system: nothing is available, so portable programs take the CPU.

Seeding calls (``manual_seed``, ``manual_seed_all``) do nothing, as PyTorch's do without a GPU.
Any other name raises an AttributeError that says symbp runs on the CPU.
"""

from __future__ import annotations

from typing import Any


def is_available() -> bool:
    return False


def device_count() -> int:
    return 0


def manual_seed(seed: int) -> None:
    """Nothing to seed: symbp's one generator is seeded by ``symbp.manual_seed``."""


def manual_seed_all(seed: int) -> None:
    """Nothing to seed: symbp's one generator is seeded by ``symbp.manual_seed``."""


def __getattr__(name: str) -> Any:
    raise AttributeError(
        f"symbp has no 'torch.cuda.{name}': symbp runs in float32/float64 on the CPU "
        f"(symbp.cuda.is_available() is False)"
    )
