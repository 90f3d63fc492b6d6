"""Epoch time of the tutorial's loop against the engine, on the same data and machine, in one process.

The tutorial's epoch: a DataLoader over torchvision MNIST with ToTensor (per-sample PIL conversion),
`.item()` on every step, then its validation pass. The engine's epoch: `mnist_tui.engine.train` with the
same config (MLP, Adam 0.001, batch 256), validation included. Three floors put the ratio in context: the
bare forward/backward/Adam loop the engine wraps, the same loop written by hand without autograd, and the
training steps' matrix products alone, which no fp32 loop on this machine goes under. Also times
evaluating the 10k test images.

    python bench/bench_training.py [--data-dir DIR] [--engine-epochs N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from mnist_tui.checkpoints import load_checkpoint
from mnist_tui.config import TrainConfig
from mnist_tui.data import resolve_data_dir
from mnist_tui.engine import train
from mnist_tui.evaluation import evaluate
from mnist_tui.events import EpochEnded, RunFailed
from mnist_tui.models import MnistModel


def tutorial_epoch(root: Path) -> tuple[float, float]:
    """One epoch of the tutorial's loop, train and validation, as written there. Returns (seconds, val acc)."""
    train_set = datasets.MNIST(root=str(root), train=True, download=False, transform=transforms.ToTensor())
    test_set = datasets.MNIST(root=str(root), train=False, download=False, transform=transforms.ToTensor())
    train_loader = DataLoader(train_set, batch_size=256, shuffle=True, drop_last=True)
    test_loader = DataLoader(test_set, batch_size=256)
    torch.manual_seed(0)
    model = MnistModel()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    started = time.perf_counter()
    model.train()
    train_loss = 0.0
    for x, y in train_loader:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        train_loss += loss.item()
    model.eval()
    val_loss = correct = 0.0
    with torch.no_grad():
        for x, y in test_loader:
            logits = model(x)
            val_loss += loss_fn(logits, y).item()  # unused here, but the tutorial's epoch does this work
            correct += torch.sum(logits.argmax(axis=-1) == y).item()
    return time.perf_counter() - started, correct / len(test_set)


def shuffled_train_set(root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST's training images (uint8) and labels, read once, and a seeded order to take them in."""
    train_set = datasets.MNIST(root=str(root), train=True, download=False)
    order = torch.randperm(len(train_set.targets), generator=torch.Generator().manual_seed(0))
    return train_set.data, train_set.targets, order


def bare_epoch(root: Path) -> float:
    """The floor: forward, backward and a fused Adam step over pre-shuffled tensors, nothing else."""
    images, labels, order = shuffled_train_set(root)
    images, labels = images[order], labels[order]
    torch.manual_seed(0)
    model = MnistModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001, fused=True)
    started = time.perf_counter()
    for begin in range(0, len(labels) - 255, 256):
        x = images[begin:begin + 256].unsqueeze(1).float().div_(255)
        loss = nn.functional.cross_entropy(model(x), labels[begin:begin + 256])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def handwritten_epoch(root: Path) -> float:
    """The ceiling for eager PyTorch: the bare loop's math with the backward written out by hand and Adam's
    fused kernel called directly, so neither autograd nor the optimizer object costs anything per step.

    The engine does not train this way (one hand-derived backward per model is not worth its upkeep); it is
    here to show how much of the tutorial-to-engine ratio the per-operation overhead still holds.
    """
    images, labels, order = shuffled_train_set(root)
    torch.manual_seed(0)
    params = [p.detach() for p in MnistModel().parameters()]
    w1, b1, w2, b2, w3, b3 = params
    exp_avg = [torch.zeros_like(p) for p in params]
    exp_avg_sq = [torch.zeros_like(p) for p in params]
    steps = [torch.zeros(()) for _ in params]
    rows_in_batch = torch.arange(256)
    relu_grad = torch.ops.aten.threshold_backward
    started = time.perf_counter()
    for begin in range(0, len(labels) - 255, 256):
        rows = order[begin:begin + 256]
        x = images.index_select(0, rows).view(256, 784).float().div_(255)
        y = labels.index_select(0, rows)
        h1 = torch.addmm(b1, x, w1.t()).relu_()
        h2 = torch.addmm(b2, h1, w2.t()).relu_()
        grad = torch.softmax(torch.addmm(b3, h2, w3.t()), 1)  # d(mean cross-entropy)/d(logits), times 256
        grad[rows_in_batch, y] -= 1
        grad.div_(256)
        d2 = relu_grad(grad.mm(w3), h2, 0)
        d1 = relu_grad(d2.mm(w2), h1, 0)
        grads = [d1.t().mm(x), d1.sum(0), d2.t().mm(h1), d2.sum(0), grad.t().mm(h2), grad.sum(0)]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [], steps, amsgrad=False, lr=0.001, beta1=0.9,
                           beta2=0.999, weight_decay=0.0, eps=1e-8, maximize=False)
    return time.perf_counter() - started


def matmul_epoch(steps: int) -> float:
    """The floor for any fp32 loop: only the matrix products of the MLP's training steps (three forward,
    five backward; the input needs no gradient), with the same shapes and count, and nothing else."""
    torch.manual_seed(0)
    x, h1, h2, grad = torch.rand(256, 784), torch.rand(256, 128), torch.rand(256, 64), torch.rand(256, 10)
    w1, w2, w3 = torch.randn(128, 784), torch.randn(64, 128), torch.randn(10, 64)
    b1, b2, b3 = torch.randn(128), torch.randn(64), torch.randn(10)
    started = time.perf_counter()
    for _ in range(steps):
        torch.addmm(b1, x, w1.t())
        torch.addmm(b2, h1, w2.t())
        torch.addmm(b3, h2, w3.t())
        d2 = grad.mm(w3)
        d1 = d2.mm(w2)
        d1.t().mm(x)
        d2.t().mm(h1)
        grad.t().mm(h2)
    return time.perf_counter() - started


def engine_epochs(root: Path, epochs: int, run_dir: Path) -> list[float]:
    # The loops it is compared with run on torch's default threads; left at 0, the engine would fit its own to
    # the load that the tutorial's loop just left behind.
    config = TrainConfig(epochs=epochs, num_threads=torch.get_num_threads())
    seconds = []
    for event in train(config, run_dir, root):
        if isinstance(event, RunFailed):
            raise SystemExit(event.message)
        if isinstance(event, EpochEnded):
            seconds.append(event.epoch_seconds)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="dataset root (default: $MNIST_TUI_DATA, else ./datasets)")
    parser.add_argument("--engine-epochs", type=int, default=3)
    args = parser.parse_args()
    root = resolve_data_dir(args.data_dir)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, data {root}")

    tutorial_seconds, tutorial_accuracy = tutorial_epoch(root)
    print(f"tutorial loop : {tutorial_seconds:7.2f} s/epoch (val acc {tutorial_accuracy:.4f})")
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch)
        seconds = engine_epochs(root, args.engine_epochs, run_dir)
        engine_seconds = sorted(seconds)[len(seconds) // 2]
        print(f"engine        : {engine_seconds:7.2f} s/epoch (median of {len(seconds)}: "
              f"{', '.join(f'{s:.2f}' for s in seconds)})")
        print(f"speed-up      : {tutorial_seconds / engine_seconds:7.1f}x")
        floor = bare_epoch(root)
        print(f"bare steps    : {floor:7.2f} s/epoch (no metrics, no validation); engine / bare = "
              f"{engine_seconds / floor:.2f}")
        ceiling = handwritten_epoch(root)
        print(f"by hand       : {ceiling:7.2f} s/epoch (bare steps without autograd or optimizer object); "
              f"tutorial / by hand = {tutorial_seconds / ceiling:.1f}x")
        products = matmul_epoch(60_000 // 256)
        print(f"matmuls only  : {products:7.2f} s/epoch (the training steps' matrix products alone); "
              f"tutorial / matmuls = {tutorial_seconds / products:.1f}x")

        started = time.perf_counter()
        result = evaluate(load_checkpoint(run_dir / "last.pt"), "test", root)
        wall = time.perf_counter() - started
    print(f"evaluate test : {result.seconds:7.3f} s for {result.samples:,} images "
          f"({wall:.2f} s with loading data and checkpoint)")


if __name__ == "__main__":
    main()
