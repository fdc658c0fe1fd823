"""``torch.backends.cudnn``: absent in symbp (CPU only). Seeded programs set ``deterministic``
and ``benchmark`` here; the flags are kept and mean nothing, since symbp's runs are
deterministic already."""

deterministic = False
benchmark = False
enabled = False


def is_available() -> bool:
    return False
