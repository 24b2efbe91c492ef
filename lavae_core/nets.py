"""Shared network blocks (paper Appendix B): residual conv blocks and conv stacks.

Every convolution is followed by a Leaky ReLU and batch normalisation ("Every convolution is followed
by a Leaky ReLU and batch normalization", Appendix B), except where a caller asks for a plain block
(the sprite decoder's last residual block).
"""
from __future__ import annotations

import torch
from torch import nn


def conv_act_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int | None = None,
                transposed: bool = False, output_padding: int = 0) -> nn.Sequential:
    """Conv (or transposed conv) -> LeakyReLU -> BatchNorm, the unit used throughout Appendix B."""
    padding = kernel // 2 if padding is None else padding
    if transposed:
        conv = nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, output_padding=output_padding)
    else:
        conv = nn.Conv2d(c_in, c_out, kernel, stride, padding)
    return nn.Sequential(conv, nn.LeakyReLU(0.2), nn.BatchNorm2d(c_out))


class ResBlock(nn.Module):
    """Residual block with 2 convolutional layers: ``x + f(x)``.

    ``plain=True`` drops the Leaky ReLU and batch norm (the last residual block of f_sprite, App. B).
    When ``c_in != c_out`` the skip path is a 1x1 convolution.
    """

    def __init__(self, c_in: int, c_out: int | None = None, plain: bool = False):
        super().__init__()
        c_out = c_in if c_out is None else c_out
        if plain:
            self.f = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(c_out, c_out, 3, padding=1))
        else:
            self.f = nn.Sequential(conv_act_bn(c_in, c_out), conv_act_bn(c_out, c_out))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.f(x)


class ResNet(nn.Module):
    """Input-resolution residual net of the inference model (App. B): a stem conv, ``blocks``
    residual blocks of 2 convs, and a final conv to ``c_out`` channels. Fully convolutional, so the
    output keeps the input's spatial size D."""

    def __init__(self, c_in: int, width: int, c_out: int, blocks: int = 4):
        super().__init__()
        self.net = nn.Sequential(conv_act_bn(c_in, width), *[ResBlock(width) for _ in range(blocks)],
                                 nn.Conv2d(width, c_out, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def set_padding_mode(module: nn.Module, mode: str) -> nn.Module:
    """Give every padded convolution in ``module`` the padding ``mode`` ("zeros", "replicate", ...);
    the weights and the output's size are unchanged."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and any(p > 0 for p in m.padding):
            m.padding_mode = mode
    return module


def n_params(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
