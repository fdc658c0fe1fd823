"""``torch.backends`` on a CPU-only system: ``mps`` and ``cudnn`` report they are unavailable."""

from symbp.backends import cudnn, mps

__all__ = ["cudnn", "mps"]
