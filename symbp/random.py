"""Random number generation as ``torch.random``: ``Generator``, ``manual_seed``, RNG state.

Each ``Generator`` wraps a NumPy ``Generator`` (PCG64); the default one is behind every random
factory (``rand``, ``randn``, ``randint`` ...), parameter initialisation, dropout masks and the
shuffling of ``symbp.utils.data``. A seeded stream is reproducible: the same seed gives the same
numbers, and separate Generators are independent. symbp does not reproduce PyTorch's bit
stream: ``symbp.manual_seed(0); symbp.rand(3)`` differs from torch's numbers (and is the same
as NumPy's ``np.random.default_rng(0).random(3)``).

>>> import symbp
>>> g = symbp.Generator().manual_seed(1)
>>> a = symbp.rand(3, generator=g).tolist()
>>> a == symbp.rand(3, generator=symbp.Generator().manual_seed(1)).tolist()
True
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import numpy as np

from symbp import devices as _device

# symbp's generator has always started from seed 0 (kept, so unseeded runs keep their numbers).
_DEFAULT_SEED = 0


class Generator:
    """As ``torch.Generator(device='cpu')``: an independent, seedable random stream.

    ``numpy_generator`` is the NumPy generator it draws from, so anything that takes a NumPy
    generator (``symbp.utils.data``'s samplers, ``random_split``) takes this one too.
    """

    def __init__(self, device: Any = "cpu"):
        self.device = _device.check(device, "symbp.Generator")
        self.manual_seed(_DEFAULT_SEED)

    def manual_seed(self, seed: int) -> Generator:
        seed = int(seed)
        self._initial_seed = seed
        # PyTorch takes any 64-bit seed, negative ones too; NumPy wants a non-negative one.
        self.numpy_generator = np.random.default_rng(seed % 2**64)
        return self

    def seed(self) -> int:
        """Seed from the operating system's entropy; returns the seed (as torch's ``seed()``)."""
        seed = secrets.randbits(63)
        self.manual_seed(seed)
        return seed

    def initial_seed(self) -> int:
        return self._initial_seed

    def get_state(self) -> Any:
        """The generator's state, as an opaque int64 tensor (torch's is a uint8 one)."""
        from symbp.tensor import tensor

        state = {"seed": self._initial_seed, "bit": self.numpy_generator.bit_generator.state}
        raw = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
        return tensor(raw.astype(np.int64))

    def set_state(self, new_state: Any) -> Generator:
        try:
            raw = np.asarray(new_state).astype(np.uint8).tobytes()
            state = json.loads(raw.decode())
            numpy_generator = np.random.default_rng()
            numpy_generator.bit_generator.state = state["bit"]
        except (ValueError, KeyError, TypeError) as err:
            raise RuntimeError(
                f"set_state: expected a state from symbp's get_state()/get_rng_state() ({err})"
            ) from None
        self._initial_seed = int(state["seed"])
        self.numpy_generator = numpy_generator
        return self

    def __repr__(self) -> str:
        return f"<symbp.Generator seeded {self._initial_seed}>"


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed symbp's default generator (random factories, initialisation, dropout, shuffling)."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the default generator non-deterministically; returns the seed."""
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> Any:
    return default_generator.get_state()


def set_rng_state(new_state: Any) -> None:
    default_generator.set_state(new_state)


def numpy_generator(
    generator: Generator | np.random.Generator | None, what: str
) -> np.random.Generator:
    """The NumPy generator behind ``generator`` (None: the default), or a TypeError."""
    if generator is None:
        return default_generator.numpy_generator
    if isinstance(generator, Generator):
        return generator.numpy_generator
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(
        f"{what}: generator must be a symbp.Generator (or a numpy.random.Generator), got "
        f"{type(generator).__name__}"
    )
