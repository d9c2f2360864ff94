"""Receptive field and jump (cumulative stride), in input pixels, carried from tensor to tensor.

For one window op (convolution, pooling) with kernel k, stride s and dilation d:
``field_out = field_in + (k_eff - 1) * jump_in``, ``jump_out = jump_in * s``, ``k_eff = d*(k-1) + 1``.
Padding moves the field but does not change its size. Any other op gives its output the largest
field among its inputs, so where branches meet (torch.cat, a residual +) the figure is the largest
field over the paths. Once an op mixes every position (a flatten before a linear layer, a global
mean), the output sees the whole extent: ``field + (size - 1) * jump``, and the spatial layout is gone.
Fields are not clipped to the image, so with padding they can exceed it (the usual convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ReceptiveField:
    """What one value of a tensor sees of the input.

    ``field``: receptive field per spatial dimension (rows, columns); ``jump``: input pixels between
    neighbouring values (None once the spatial layout is gone); ``dims``: where the spatial dims sit
    in the tensor, counted from the end (``(-2, -1)`` for NCHW, ``(-3, -2)`` for NHWC); ``extent``:
    the tensor's size along them.
    """

    field: tuple[int, ...]
    jump: tuple[int, ...] | None
    dims: tuple[int, ...] | None
    extent: tuple[int, ...] | None

    @property
    def is_global(self) -> bool:
        return self.dims is None

    def matches(self, shape: tuple[int, ...]) -> bool:
        """Whether a tensor of ``shape`` still has this field's spatial layout."""
        if self.dims is None or len(shape) < -min(self.dims):
            return False
        return tuple(shape[d] for d in self.dims) == self.extent

    def whole_extent(self) -> ReceptiveField:
        """The field of a value that mixes every position of this tensor (flatten, global mean)."""
        if self.is_global:
            return self
        field = tuple(f + (n - 1) * j for f, n, j in zip(self.field, self.extent, self.jump))
        return ReceptiveField(field, None, None, None)


def input_field(spatial_shape: tuple[int, ...]) -> ReceptiveField:
    """Each input pixel sees itself: field 1, jump 1."""
    d = len(spatial_shape)
    return ReceptiveField((1,) * d, (1,) * d, tuple(range(-d, 0)), tuple(spatial_shape))


def kernel_span(kernel: int, dilation: int = 1) -> int:
    """Input pixels one kernel covers: ``dilation*(kernel-1) + 1`` (a 3x3 kernel with dilation 2 spans 5)."""
    return dilation * (kernel - 1) + 1


def through_window(
    source: ReceptiveField,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    out_shape: tuple[int, ...],
) -> ReceptiveField:
    """Field after a convolution or pooling window over the trailing ``len(kernel)`` dims."""
    d = len(kernel)
    if source.is_global or source.dims != tuple(range(-d, 0)):
        return widest([source], out_shape)
    field = tuple(
        f + (kernel_span(k, dl) - 1) * j for f, k, dl, j in zip(source.field, kernel, dilation, source.jump)
    )
    jump = tuple(j * s for j, s in zip(source.jump, stride))
    return ReceptiveField(field, jump, source.dims, tuple(out_shape[-d:]))


def adaptive_window(size_in: int, size_out: int) -> tuple[int, int]:
    """(kernel, stride) of adaptive pooling from ``size_in`` to ``size_out`` values.

    Window i covers ``[floor(i*n/o), ceil((i+1)*n/o))``; the kernel is the widest window and the
    stride ``floor(n/o)`` (exact when n is a multiple of o, as in global pooling).
    """
    if size_out >= size_in:
        return 1, 1
    widest_window = max(
        math.ceil((i + 1) * size_in / size_out) - (i * size_in) // size_out for i in range(size_out)
    )
    return widest_window, max(1, size_in // size_out)


def through_adaptive_pool(source: ReceptiveField, out_shape: tuple[int, ...], d: int) -> ReceptiveField:
    if source.is_global or source.dims != tuple(range(-d, 0)):
        return widest([source], out_shape)
    windows = [adaptive_window(n, o) for n, o in zip(source.extent, out_shape[-d:])]
    kernel = tuple(k for k, _ in windows)
    stride = tuple(s for _, s in windows)
    return through_window(source, kernel, stride, (1,) * d, out_shape)


def through_permute(
    source: ReceptiveField, order: tuple[int, ...], out_shape: tuple[int, ...]
) -> ReceptiveField:
    """Follow the spatial dims through ``permute``/``transpose`` (ConvNeXt's NCHW <-> NHWC)."""
    if source.is_global:
        return source
    ndim = len(order)
    order = tuple(o % ndim for o in order)
    positions = tuple(order.index(d % ndim) - ndim for d in source.dims)
    moved = ReceptiveField(source.field, source.jump, positions, source.extent)
    return moved if moved.matches(out_shape) else source.whole_extent()


def widest(sources: list[ReceptiveField], out_shape: tuple[int, ...]) -> ReceptiveField:
    """Field of an op that is not a window: the largest input field, per spatial dimension.

    The output keeps the spatial layout of an input whose layout it still has (elementwise ops,
    torch.cat, reshapes that leave the spatial dims alone); if none, the op mixed positions and the
    output sees the whole extent of its widest input.
    """
    rank = max(len(s.field) for s in sources)
    sources = [s for s in sources if len(s.field) == rank]
    aligned = [s for s in sources if s.matches(out_shape)]
    candidates = [s if s in aligned or s.is_global else s.whole_extent() for s in sources]
    field = tuple(max(c.field[i] for c in candidates) for i in range(rank))
    if aligned:
        layout = aligned[0]
        return ReceptiveField(field, layout.jump, layout.dims, layout.extent)
    return ReceptiveField(field, None, None, None)
