"""Seeds from one place.

Every chapter calls :func:`seed_everything` (or reads :func:`base_seed`) so that
``BNBOOK_SEED=<n> make test`` re-runs the whole book on other seeds.
Used by every chapter and by :mod:`bnbook.train` for multi-seed runs.
"""
import os
import random

import numpy as np
import torch

DEFAULT_SEED = 0


def base_seed() -> int:
    """The book's base seed: ``$BNBOOK_SEED`` if set, else 0."""
    raw = os.environ.get("BNBOOK_SEED", "").strip()
    if not raw:
        return DEFAULT_SEED
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"BNBOOK_SEED must be an integer, got {raw!r}") from None


def seeds(n: int) -> list[int]:
    """``n`` consecutive seeds starting at the base seed (for multi-seed runs)."""
    if n < 1:
        raise ValueError(f"need at least one seed, got n={n}")
    start = base_seed()
    return list(range(start, start + n))


def seed_everything(seed: int | None = None) -> int:
    """Seed Python, NumPy and torch; returns the seed used (the base seed by default)."""
    seed = base_seed() if seed is None else int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed
