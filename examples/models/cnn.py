"""A small CNN in conv-bn-activation stages, plus one stage whose module cannot be written
out on its own: its constructor takes a config object and its forward branches on the data."""

from dataclasses import dataclass

import torch
import torch.nn as nn


class ConvBNAct(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


@dataclass
class GateConfig:
    channels: int
    threshold: float = 0.0


class DataGate(nn.Module):
    """Scales by one of two learned vectors, chosen by the batch's mean: data-dependent
    control flow (no traced graph) and a config-object argument (no literal constructor)."""

    def __init__(self, config: GateConfig):
        super().__init__()
        self.threshold = config.threshold
        self.high = nn.Parameter(torch.ones(config.channels, 1, 1))
        self.low = nn.Parameter(torch.full((config.channels, 1, 1), 0.5))
        self.mix = nn.Conv2d(config.channels, config.channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.high if x.mean() > self.threshold else self.low
        return self.mix(x) * scale


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10, width: int = 16):
        super().__init__()
        self.stem = ConvBNAct(3, width)
        self.stages = nn.Sequential(
            ConvBNAct(width, width), ConvBNAct(width, width),
            ConvBNAct(width, 2 * width, stride=2),
            ConvBNAct(2 * width, 2 * width), ConvBNAct(2 * width, 2 * width),
        )
        self.gate = DataGate(GateConfig(2 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gate(self.stages(self.stem(x)))
        return self.fc(self.pool(x).flatten(1))
