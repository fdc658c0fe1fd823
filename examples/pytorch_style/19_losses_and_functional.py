"""The losses and activations the tutorials reach for, as modules and as torch.nn.functional
calls, on fixed inputs: MSE, L1, SmoothL1, Huber, CrossEntropy (class weights, label
smoothing), NLL, BCE, BCEWithLogits (pos_weight); F.relu, F.softmax, F.log_softmax,
F.one_hot; each loss's gradient with respect to its input."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

rng = np.random.default_rng(13)
pred = torch.tensor(rng.normal(size=(6, 4)), dtype=torch.float64, requires_grad=True)
target = torch.tensor(rng.normal(size=(6, 4)), dtype=torch.float64)
labels = torch.tensor([0, 3, 1, 1, 2, 0])
probs_target = torch.tensor(rng.integers(0, 2, size=(6, 4)), dtype=torch.float64)
class_weights = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)

losses = {
    "mse": nn.MSELoss()(pred, target),
    "mse_sum": F.mse_loss(pred, target, reduction="sum"),
    "l1": nn.L1Loss()(pred, target),
    "smooth_l1": F.smooth_l1_loss(pred, target, beta=0.5),
    "huber": F.huber_loss(pred, target, delta=0.8),
    "ce": nn.CrossEntropyLoss()(pred, labels),
    "ce_weighted": F.cross_entropy(pred, labels, weight=class_weights),
    "ce_smooth": F.cross_entropy(pred, labels, label_smoothing=0.1),
    "nll": nn.NLLLoss()(F.log_softmax(pred, dim=1), labels),
    "bce": nn.BCELoss()(torch.sigmoid(pred), probs_target),
    "bce_logits": F.binary_cross_entropy_with_logits(
        pred, probs_target, pos_weight=torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    ),
}
for name, loss in losses.items():
    pred.grad = None
    loss.backward()
    # a cross-entropy's gradient sums to 0 over each row: its roundoff is no library's answer
    print(name, loss.item(), round(pred.grad.sum().item(), 12), pred.grad.abs().sum().item())

with torch.no_grad():
    print(F.relu(pred).sum().item(), F.softmax(pred, dim=1).sum(dim=1).tolist())
    print(F.log_softmax(pred, dim=-1).exp().sum().item())
print(F.one_hot(labels, num_classes=4).tolist())
print(F.one_hot(labels).shape)
