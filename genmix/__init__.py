"""genmix: generative mixup augmentation for small, imbalanced medical image datasets.

The fused kernels live in :mod:`genmix.ops`; everything else is built on them.
"""

# The compiled extension genmix._C links against torch's shared libraries (libc10, libtorch),
# which only a loaded torch puts in the process: import torch first, so that `import genmix._C`
# works on its own. Nothing else is imported here, to keep `import genmix` cheap.
import torch  # noqa: F401

__version__ = "0.1.0"

__all__ = ["__version__"]
