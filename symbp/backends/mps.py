"""``torch.backends.mps``: Apple's GPU backend, which symbp (CPU only) does not have."""


def is_available() -> bool:
    return False


def is_built() -> bool:
    return False
