"""bnbook: the helper package of the executable textbook on Batch Normalization.

Each module holds one idea of the book; the chapter that teaches it is named in
its docstring. The BN layers are drop-ins for torch's:

>>> from bnbook import BatchNorm1d, BatchNorm2d, batch_norm
"""
from .claims import ClaimFailed, claim
from .functional import batch_norm
from .layers import BatchNorm1d, BatchNorm2d
from .seeds import base_seed, seed_everything, seeds

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "batch_norm",
    "claim", "ClaimFailed", "base_seed", "seed_everything", "seeds",
]
__version__ = "0.1.0"
