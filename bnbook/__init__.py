"""bnbook: the helper package of the executable textbook on Batch Normalization.

Two wings. The shared toolkit, the modules directly in ``bnbook/``: BN and its relatives
from scratch (:mod:`~bnbook.functional`, :mod:`~bnbook.layers`), :mod:`~bnbook.models`,
offline :mod:`~bnbook.data`, one training loop (:mod:`~bnbook.train`), probes
(:mod:`~bnbook.measure`, :mod:`~bnbook.hessian`), :mod:`~bnbook.folding`,
:mod:`~bnbook.plots`, :mod:`~bnbook.widgets`, the self-check kit
(:mod:`~bnbook.selfcheck`), :mod:`~bnbook.claims` and :mod:`~bnbook.seeding`. And the code
of single chapters, ``bnbook.chapters.<chapter>``, named like ``chapters/<chapter>.ipynb``,
which imports only the toolkit's public names.

The normalization layers are drop-ins for torch's:

>>> from bnbook import BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm, batch_norm
"""
from .claims import ClaimFailed, claim
from .functional import batch_norm, group_norm, layer_norm
from .layers import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .seeding import base_seed, seed_everything, seeds

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "batch_norm", "LayerNorm", "GroupNorm", "layer_norm", "group_norm",
    "claim", "ClaimFailed", "base_seed", "seed_everything", "seeds",
]
__version__ = "0.1.0"
