"""grid_sample: bilinear resampling whose backward can itself be differentiated, on every device.

The R1 penalty differentiates the discriminator's input gradient, and with ADA that gradient
passes through a bilinear `grid_sample`. torch's CUDA `grid_sampler_2d_backward` has no
derivative of its own ("derivative for aten::grid_sampler_2d_backward is not implemented"), so
R1 with augmentation fails on a GPU, while the CPU happens to work. This module defines two
torch.library custom operators that only call torch's own forward and backward kernels, so
they run wherever torch does, and gives them the derivatives explicitly:

- `genmix::grid_sample_2d(input, grid, padding_mode, align_corners)` samples `input` at `grid`;
  its backward is `grid_sample_2d_backward`.
- `genmix::grid_sample_2d_backward(grad_output, input, grid, padding_mode, align_corners)`
  returns the gradient with respect to `input` only. That gradient is linear in `grad_output`
  and does not depend on the values of `input`, so its derivative with respect to
  `grad_output` is the adjoint of the backward, which is the forward sampling again, and its
  derivative with respect to `input` is zero. Any order of derivative with respect to the
  input therefore stays within these two ops.

There is no gradient with respect to `grid`: ADA builds its grid from random parameters that do
not require grad. A grid that requires grad is refused with a message that points to
`torch.nn.functional.grid_sample`, rather than silently dropping its gradient.
"""

from __future__ import annotations

import torch

__all__ = ["PADDING_MODES", "grid_sample"]

OP = "grid_sample"

# The integer codes of aten's grid_sampler_2d.
PADDING_MODES = {"zeros": 0, "border": 1, "reflection": 2}
_BILINEAR = 0

_FORWARD = "grid_sample_2d"
_BACKWARD = "grid_sample_2d_backward"


def _no_grid_grad(needs_grad: bool) -> None:
    if needs_grad:
        raise RuntimeError(f"genmix::{_FORWARD}: gradients with respect to grid are not supported; "
                           "use torch.nn.functional.grid_sample when the grid must be learned")


def _register() -> None:
    """Defines both ops once per process.

    torch.library refuses a second definition of the same name, and the ops are process-wide,
    so a second import of this module (importlib.reload, a test that re-imports it) reuses the
    ops defined by the first one.
    """
    if hasattr(torch.ops.genmix, _FORWARD) and hasattr(torch.ops.genmix, _BACKWARD):
        return

    @torch.library.custom_op(f"genmix::{_FORWARD}", mutates_args=())
    def forward_op(input: torch.Tensor, grid: torch.Tensor, padding_mode: int,
                   align_corners: bool) -> torch.Tensor:
        out = torch.ops.aten.grid_sampler_2d(input, grid, _BILINEAR, padding_mode, align_corners)
        return out.contiguous()

    @forward_op.register_fake
    def _(input, grid, padding_mode, align_corners):
        return input.new_empty((input.shape[0], input.shape[1], grid.shape[1], grid.shape[2]))

    @torch.library.custom_op(f"genmix::{_BACKWARD}", mutates_args=())
    def backward_op(grad_output: torch.Tensor, input: torch.Tensor, grid: torch.Tensor,
                    padding_mode: int, align_corners: bool) -> torch.Tensor:
        grad_input, _ = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, input, grid, _BILINEAR, padding_mode, align_corners, [True, False])
        return grad_input.contiguous()

    @backward_op.register_fake
    def _(grad_output, input, grid, padding_mode, align_corners):
        return torch.empty_like(input, memory_format=torch.contiguous_format)

    def forward_setup(ctx, inputs, output):
        input, grid, padding_mode, align_corners = inputs
        ctx.save_for_backward(input, grid)
        ctx.padding_mode = padding_mode
        ctx.align_corners = align_corners

    def forward_grad(ctx, grad):
        _no_grid_grad(ctx.needs_input_grad[1])
        input, grid = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.ops.genmix.grid_sample_2d_backward(
                grad, input, grid, ctx.padding_mode, ctx.align_corners)
        return grad_input, None, None, None

    def backward_setup(ctx, inputs, output):
        _, _, grid, padding_mode, align_corners = inputs
        ctx.save_for_backward(grid)
        ctx.padding_mode = padding_mode
        ctx.align_corners = align_corners

    def backward_grad(ctx, grad):
        _no_grid_grad(ctx.needs_input_grad[2])
        (grid,) = ctx.saved_tensors
        grad_grad_output = None
        if ctx.needs_input_grad[0]:
            grad_grad_output = torch.ops.genmix.grid_sample_2d(
                grad, grid, ctx.padding_mode, ctx.align_corners)
        # The input gradient does not depend on the values of input: its derivative is zero.
        return grad_grad_output, None, None, None, None

    torch.library.register_autograd(f"genmix::{_FORWARD}", forward_grad, setup_context=forward_setup)
    torch.library.register_autograd(f"genmix::{_BACKWARD}", backward_grad, setup_context=backward_setup)


_register()


def grid_sample(input: torch.Tensor, grid: torch.Tensor, padding_mode: str = "zeros",
                align_corners: bool = False) -> torch.Tensor:
    """Bilinear `torch.nn.functional.grid_sample` that can be differentiated any number of times
    with respect to `input`, on every device.

    input: (N, C, H, W) floating point; grid: (N, H_out, W_out, 2) of the same dtype and device,
    (x, y) in [-1, 1]; padding_mode: "zeros", "border" or "reflection". Returns
    (N, C, H_out, W_out). The grid must not require grad (see the module docstring); use
    `torch.nn.functional.grid_sample` for a learned grid.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{OP}: input must be a torch.Tensor, got {type(input).__name__}")
    if not isinstance(grid, torch.Tensor):
        raise TypeError(f"{OP}: grid must be a torch.Tensor, got {type(grid).__name__}")
    if not input.is_floating_point():
        raise TypeError(f"{OP}: input must be a floating-point tensor, got dtype {input.dtype}")
    if grid.dtype != input.dtype:
        raise TypeError(f"{OP}: grid must have the dtype of input ({input.dtype}), got {grid.dtype}")
    if input.ndim != 4:
        raise ValueError(f"{OP}: input must have shape (N, C, H, W), got {tuple(input.shape)}")
    if grid.ndim != 4 or grid.shape[-1] != 2 or grid.shape[0] != input.shape[0]:
        raise ValueError(f"{OP}: grid must have shape (N={input.shape[0]}, H_out, W_out, 2), "
                         f"got {tuple(grid.shape)}")
    if grid.device != input.device:
        raise ValueError(f"{OP}: grid is on device {grid.device} but input is on device {input.device}")
    if not isinstance(padding_mode, str):
        raise TypeError(f"{OP}: padding_mode must be a string, got {type(padding_mode).__name__}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{OP}: padding_mode must be one of {sorted(PADDING_MODES)}, got {padding_mode!r}")
    if not isinstance(align_corners, bool):
        raise TypeError(f"{OP}: align_corners must be a bool, got {type(align_corners).__name__}")
    if grid.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"{OP}: gradients with respect to grid are not supported (grid requires "
                         "grad); use torch.nn.functional.grid_sample for a learned grid, or pass "
                         "grid.detach()")
    return torch.ops.genmix.grid_sample_2d(input, grid, PADDING_MODES[padding_mode], align_corners)
