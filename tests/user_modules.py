"""Small user modules for tests/test_user_code.py: source text a test writes to its tmp_path, so that a
sweep's `target` imports it from the working folder (as a user's own code would be)."""

from __future__ import annotations

MODELS = '''
import torch
from torch import nn

VALUE = 3


def mlp(input_shape, num_classes, hidden=16):
    width = 1
    for n in input_shape:
        width *= n
    return nn.Sequential(nn.Flatten(), nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def mlp_with(input_shape, num_classes, hidden=16, activation="relu"):
    act = nn.Tanh() if activation == "tanh" else nn.ReLU()
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), act, nn.Linear(hidden, num_classes))


class Net(nn.Module):
    """Conv, BatchNorm, a transposed conv and a classifier: every kind of layer the selection knows."""

    def __init__(self, channels, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.norm = nn.GroupNorm(1, 2)
        self.fc = nn.Linear(2 * 56 * 56, num_classes)

    def forward(self, x):
        return self.fc(self.norm(self.up(torch.relu(self.bn(self.conv(x))))).flatten(1))


def net(input_shape, num_classes):
    return Net(input_shape[0], num_classes)


def raises(input_shape, num_classes):
    raise ValueError("width must be even")


def not_a_module(input_shape, num_classes):
    return 42


def wrong_output(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 5))


def bad_forward(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(100, num_classes))
'''

DATA = """
import numpy as np
import torch


def _arrays(n=300, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, 12)).astype(np.float32) + y[:, None]
    return x, y


def load(n=300, classes=10):
    x, y = _arrays(n, classes)
    xt, yt = _arrays(100, classes, seed=1)
    return x, y, torch.as_tensor(xt), torch.as_tensor(yt)


def three():
    x, y = _arrays()
    return x, y, x


def short_labels():
    x, y = _arrays()
    return x, y[:-1], x, y


def float_labels():
    x, y = _arrays()
    return x, y.astype(np.float64), x, y


def label_out_of_range():
    x, y = _arrays()
    yt = y.copy()
    yt[0] = 12
    return x, y, x, yt


def negative_label():
    x, y = _arrays()
    y = y.copy()
    y[3] = -1
    return x, y, x, y


def raises():
    raise OSError("no such file: digits.npz")
"""

BROKEN = "raise RuntimeError('boom at import')\n"

TOKENS = """
import numpy as np
import torch


def _windows(n, context=8, vocab=50, seed=0):
    stream = np.random.default_rng(seed).integers(0, vocab, size=n * context + 1)
    x = np.stack([stream[i * context : (i + 1) * context] for i in range(n)])
    y = np.stack([stream[i * context + 1 : (i + 1) * context + 1] for i in range(n)])
    return x, y


def load(n=40, context=8, vocab=50):
    x, y = _windows(n, context, vocab)
    xt, yt = _windows(10, context, vocab, seed=1)
    return torch.as_tensor(x), torch.as_tensor(y), xt.astype(np.int32), yt.astype(np.int32)


def float_tokens():
    x, y = _windows(40)
    return x.astype(np.float32), y, x, y


def shifted_shape():
    x, y = _windows(40)
    return x, y[:, :-1], x, y


def other_context():
    x, y = _windows(40)
    xt, yt = _windows(10, context=4)
    return x, y, xt, yt


def negative_id():
    x, y = _windows(40)
    y = y.copy()
    y[2, 3] = -7
    return x, y, x, y


def flat():
    x, y = _windows(40)
    return x.reshape(-1), y.reshape(-1), x, y
"""

TRANSFORMERS = '''
import torch
from torch import nn


class Block(nn.Module):
    """A pre-LN block under names no default pattern knows: init.roles names them."""

    def __init__(self, d):
        super().__init__()
        self.pre_attn, self.pre_ff = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attention = nn.MultiheadAttention(d, 4, batch_first=True)
        self.ff_up, self.ff_down = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x):
        h = self.pre_attn(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        return x + self.ff_down(torch.relu(self.ff_up(self.pre_ff(x))))


class ImageTransformer(nn.Module):
    """Images as 16 tokens of 7x7 pixels, two blocks, the mean token's classifier."""

    def __init__(self, classes, d=32):
        super().__init__()
        self.patches = nn.Linear(49, d)
        self.stack = nn.ModuleList(Block(d) for _ in range(2))
        self.classify = nn.Linear(d, classes)

    def forward(self, x):
        b = x.shape[0]
        x = x.reshape(b, 4, 7, 4, 7).permute(0, 1, 3, 2, 4).reshape(b, 16, 49)
        x = self.patches(x)
        for block in self.stack:
            x = block(x)
        return self.classify(x.mean(1))


def image_transformer(input_shape, num_classes):
    return ImageTransformer(num_classes)
'''
