"""Triton implementations of the fused ops (the ``triton`` backend of :mod:`genmix.ops`).

One module per op, each importing triton itself: triton is optional at run time, so importing
this package must stay free of it and only ``genmix.kernels.<op>`` pulls it in.

- :mod:`genmix.kernels.upfirdn2d`: upsample, pad, FIR-filter and downsample in one pass.
- :mod:`genmix.kernels.bias_act`: bias + activation + gain + clamp, and its first two derivatives.

Both follow the semantics defined in ``csrc/params.h`` (shared by every backend). They run on
CUDA tensors, and on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set before
triton is imported).
"""
