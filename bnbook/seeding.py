"""Seeds from one place: the book's one random-number convention.

Every chapter calls :func:`seed_everything` (or reads :func:`base_seed`) so that
``BNBOOK_SEED=<n> make test`` re-runs the whole book on other seeds.

Every function in bnbook that draws random numbers follows one of two forms:

* ``seed=None``: the function makes its own stream from :func:`resolve` (None means the base
  seed, an integer is used as given) with :func:`generator` (torch) or :func:`rng` (NumPy);
  the global random state is not touched, and calling it twice gives the same draw.
* ``generator=None``: a sampler called many times in a chapter's flow (e.g.
  :func:`bnbook.measure.random_batches`) draws from the torch.Generator it is given, or,
  for None, from torch's global generator, which :func:`seed_everything` seeds at the top
  of every chapter; successive calls then give different draws, reproducibly.

A fixed constant seed that ``BNBOOK_SEED`` cannot move is only used where a value must not
change with the seed (the fixed cases of a self-check), and is documented there.
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


def resolve(seed: int | None = None, offset: int = 0) -> int:
    """``seed`` (an integer) or, for None, the base seed; plus ``offset`` (to give one experiment's parts
    distinct but reproducible streams)."""
    if seed is None:
        seed = base_seed()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer or None, got {type(seed).__name__}")
    return int(seed) + int(offset)


def generator(seed: int | None = None, offset: int = 0) -> torch.Generator:
    """A torch.Generator seeded with :func:`resolve` ``(seed, offset)``."""
    return torch.Generator().manual_seed(resolve(seed, offset))


def rng(seed: int | None = None, offset: int = 0) -> np.random.Generator:
    """A NumPy Generator seeded with :func:`resolve` ``(seed, offset)``."""
    return np.random.default_rng(resolve(seed, offset) % 2**32)


def seed_everything(seed: int | None = None) -> int:
    """Seed Python, NumPy and torch; returns the seed used (the base seed by default)."""
    seed = base_seed() if seed is None else int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed
