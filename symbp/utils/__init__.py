"""``symbp.utils``: as ``torch.utils``, the data-loading tools (``symbp.utils.data``)."""

from symbp.utils import data

__all__ = ["data"]
