"""CIFAR-10 with a ResNet-style CNN: a real-data run sized for a GPU (about 30 s an epoch on a
mid-range GPU with --amp; very slow on a CPU).

    pip install torchvision
    cosinetui run demos/cifar10.py --amp

Needs torchvision and, the first time, internet access to download the data set (about 170 MB)
into ./data. What you should see: val accuracy passing 90% by the end of 30 epochs, the LR
warming up for 2 epochs, then one cosine per batch down to zero.
"""

import torch
from torch import nn

from cosinetui import Experiment
from cosinetui.experiment import ExperimentError, accuracy


def _block(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_block(channels, channels), _block(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def resnet9(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        _block(3, 64), _block(64, 128), nn.MaxPool2d(2), _Residual(128),
        _block(128, 256), nn.MaxPool2d(2), _block(256, 512), nn.MaxPool2d(2), _Residual(512),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(512, classes),
    )


def experiment(root: str = "./data") -> Experiment:
    try:
        import torchvision
        from torchvision import transforms as T
    except ImportError:
        raise ExperimentError("this demo needs torchvision: pip install torchvision") from None
    norm = T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    try:
        train = torchvision.datasets.CIFAR10(root, train=True, download=True, transform=train_tf)
        val = torchvision.datasets.CIFAR10(root, train=False, download=True, transform=T.Compose([T.ToTensor(), norm]))
    except Exception as exc:  # offline, proxy, disk full
        raise ExperimentError(f"could not get CIFAR-10 into {root} ({exc}); download it once with internet access") from None
    loader = torch.utils.data.DataLoader
    workers = 4
    return Experiment(
        name="cifar10",
        model=resnet9(),
        train_data=loader(train, batch_size=256, shuffle=True, num_workers=workers, pin_memory=True, drop_last=True),
        val_data=loader(val, batch_size=1024, num_workers=workers, pin_memory=True),
        loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.2, momentum=0.9, weight_decay=5e-4, nesterov=True),
        epochs=30,
        interval="batch",
        warmup=2 * 195,
        metrics={"acc": accuracy},
        seed=0,
    )
