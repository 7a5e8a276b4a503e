"""Tiny models train fastest on one thread; two threads on a busy 2-core machine are many
times slower (the backward passes contend)."""

import torch

torch.set_num_threads(1)
