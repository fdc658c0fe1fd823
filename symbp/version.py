"""symbp's version, in a module of its own: the program cache's keys and the exporters name it,
and they sit below the package that re-exports it (``symbp.__version__``)."""

__version__ = "0.1.0"
