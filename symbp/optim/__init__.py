"""Optimizers whose update rules are formulas (evaluated eagerly, lowered when compiled)."""

from symbp.optim.optimizer import Optimizer
from symbp.optim.rules import SGD, Adam, AdamW

__all__ = ["SGD", "Adam", "AdamW", "Optimizer"]
