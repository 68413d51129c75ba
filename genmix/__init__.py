"""genmix: generative mixup augmentation for small, imbalanced medical image datasets.

The fused kernels live in :mod:`genmix.ops`; everything else is built on them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
