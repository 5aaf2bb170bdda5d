"""The seed post's PyTorch SE block and SE bottleneck, written out exactly as in the post.

The parity tests compare minise's SEBlock and SEBottleneck against these classes.
"""
from torch import nn


class SEBlock(nn.Module):
    def __init__(self, input_channels, reduction_ratio):
        super().__init__()
        self.sequence = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.Linear(input_channels, input_channels // reduction_ratio, bias=False), nn.ReLU(),
            nn.Linear(input_channels // reduction_ratio, input_channels), nn.Sigmoid(),
            nn.Unflatten(1, (input_channels, 1, 1)))
    def forward(self, x):
        return x * self.sequence(x)

class SEBottleneck(nn.Module):
    expansion = 4
    def __init__(self, input_channels, in_channels, reduction_ratio, stride=1):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(input_channels, in_channels, 1, bias=False), nn.BatchNorm2d(in_channels), nn.ReLU(),
            nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(in_channels), nn.ReLU(),
            nn.Conv2d(in_channels, in_channels * 4, 1, bias=False), nn.BatchNorm2d(in_channels * 4))
        self.se_block = SEBlock(in_channels * 4, reduction_ratio)
        self.shortcut = nn.Sequential()
        if stride != 1 or input_channels != in_channels * 4:
            self.shortcut = nn.Sequential(
                nn.Conv2d(input_channels, in_channels * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(in_channels * 4))
        self.relu = nn.ReLU()
    def forward(self, x):
        out = self.se_block(self.block(x))
        out = out + self.shortcut(x)
        return self.relu(out)
