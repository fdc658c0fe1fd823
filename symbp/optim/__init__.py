"""Optimizers whose update rules are formulas (evaluated eagerly, lowered when compiled)."""

from symbp.optim import lr_scheduler
from symbp.optim.optimizer import Optimizer
from symbp.optim.rules import SGD, Adagrad, Adam, AdamW, RMSprop

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
