"""The book's ``im2col`` and ``col2im`` (``common/util.py``), written once on the Array API.

``im2col`` unrolls every filter-sized window of a batch of images into one row of a matrix, so
that a convolution becomes one matrix product (and a max pooling one ``max`` along rows).
``col2im`` is its adjoint: it adds every row back into the window it came from, which is how
gradients flow back to the image.

The book fills a zero array by assignment, one filter offset at a time, and ``col2im`` adds into
strided slices with ``+=``. Neither is possible on immutable arrays (JAX), so here:

* ``im2col`` takes, for each of the ``filter_h * filter_w`` offsets, the strided slice of the
  padded image that the offset sees, and stacks the slices: no assignment, no loop over samples
  or pixels. The image is first put in ``(N, H, W, C)`` order, so the stacked result is already
  laid out as the rows the book returns (and a convolution's output, which the layers keep in
  that order in memory, needs no copy to get there).
* ``col2im`` spreads the rows over a zero border (and, for a stride above 1, over zeros between
  them), so that every offset's contribution is a plain shifted slice of one array, and adds
  those slices: again one sum per offset.

Rows and columns are in the book's order: row ``(n, i, j)`` (sample, output row, output column),
column ``(c, y, x)`` (channel, filter row, filter column).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device

from .backends import Array, namespace

__all__ = [
    "add_window_slices",
    "check_window_int",
    "col2im",
    "col2im_nhwc",
    "conv_output_size",
    "im2col",
    "im2col_nhwc",
    "pad_axis",
    "pad_hw",
    "transposed_windows",
    "window_slices",
]


def conv_output_size(input_size: int, filter_size: int, stride: int = 1, pad: int = 0) -> int:
    """The output length of a convolution or pooling along one axis: ``(L + 2p - F) // s + 1``.

    The book's version returns a float for strides that do not divide evenly; this is the
    length ``im2col`` really produces (windows that would run past the edge are dropped).
    """
    return (input_size + 2 * pad - filter_size) // stride + 1


def check_window_int(value: Any, name: str, least: int) -> int:
    """``value`` as an int, if it is an integer of at least ``least`` (a window's size,
    stride or padding); else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def _check_geometry(
    shape: tuple[int, ...], filter_h: int, filter_w: int, stride: int, pad: int
) -> tuple[int, int]:
    """Validate a window geometry for an ``(N, C, H, W)`` shape; return the output size."""
    if len(shape) != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got shape {tuple(shape)}")
    for name, value, least in (
        ("filter_h", filter_h, 1),
        ("filter_w", filter_w, 1),
        ("stride", stride, 1),
        ("pad", pad, 0),
    ):
        check_window_int(value, name, least)
    _, _, h, w = shape
    out_h = conv_output_size(h, filter_h, stride, pad)
    out_w = conv_output_size(w, filter_w, stride, pad)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"a {filter_h}x{filter_w} window does not fit images of {h}x{w} with padding {pad}"
        )
    return out_h, out_w


def pad_hw(img: Array, before: tuple[int, int], after: tuple[int, int], value: float) -> Array:
    """``img`` of shape ``(N, H, W, C)`` with ``value`` added around its H and W axes."""
    (top, left), (bottom, right) = before, after
    return pad_axis(pad_axis(img, 2, left, right, value), 1, top, bottom, value)


def pad_axis(img: Array, axis: int, before: int, after: int, value: float) -> Array:
    """``before`` and ``after`` entries of ``value`` on either side of one axis of ``img``."""
    if not (before or after):
        return img
    xp = namespace(img)

    def fill(count: int) -> Array:
        shape = tuple(count if i == axis else d for i, d in enumerate(img.shape))
        return xp.full(shape, value, dtype=img.dtype, device=device(img))

    parts = [fill(before)] if before else []
    parts.append(img)
    if after:
        parts.append(fill(after))
    return xp.concat(parts, axis=axis)


def window_slices(
    img: Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0, pad_value: float = 0.0
) -> list[Array]:
    """For each filter offset ``(y, x)``, row by row, what that offset sees of every window.

    ``img`` is in ``(N, H, W, C)`` order; each slice has shape ``(N, out_h, out_w, C)`` and
    is a strided view of the (padded) image: the window at output ``(i, j)`` starts at
    ``(i*stride, j*stride)``, so its offset ``(y, x)`` is the slice starting at ``(y, x)``.
    Stacked, they are `im2col`'s rows; a max pooling takes their elementwise maximum.
    """
    n, h, w, c = img.shape
    out_h, out_w = _check_geometry((n, c, h, w), filter_h, filter_w, stride, pad)
    img = pad_hw(img, (pad, pad), (pad, pad), pad_value) if pad else img
    span_h, span_w = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
    spans = [
        img[:, y : y + span_h, x : x + span_w, :] for y in range(filter_h) for x in range(filter_w)
    ]
    if stride == 1:
        return spans
    # The offset's span first, then every stride-th of it: the same views as one strided slice
    # from (y, x), but JAX compiles a strided slice for each start it is given, and a plain
    # slice and a stride from 0 once for all the offsets.
    return [span[:, ::stride, ::stride, :] for span in spans]


def im2col_nhwc(
    img: Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0, pad_value: float = 0.0
) -> Array:
    """`im2col` of images in ``(N, H, W, C)`` order, as ``(N, out_h, out_w, C, filter_h*filter_w)``.

    The layers' working form: reshaping it to ``(N*out_h*out_w, C*filter_h*filter_w)`` gives
    the book's matrix without a copy.
    """
    slices = window_slices(img, filter_h, filter_w, stride, pad, pad_value)
    return namespace(img).stack(slices, axis=-1)


def im2col(
    input_data: Array,
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    pad: int = 0,
    *,
    pad_value: float = 0.0,
) -> Array:
    """Unroll the windows of a batch of images into rows, as the book's ``im2col``.

    Parameters
    ----------
    input_data : array, shape (N, C, H, W)
    filter_h, filter_w : int
        The window's height and width.
    stride : int, default 1
    pad : int, default 0
        Rows and columns of ``pad_value`` added on every side.
    pad_value : float, default 0
        What the padding holds (max pooling pads with ``-inf``, so that padding never wins).

    Returns
    -------
    array, shape (N*out_h*out_w, C*filter_h*filter_w)
        Row ``(n, i, j)`` holds the window of sample ``n`` at output position ``(i, j)``,
        channel by channel, each channel's window row by row.
    """
    xp = namespace(input_data)
    n, c, _, _ = _shape4(input_data)
    img = xp.permute_dims(input_data, (0, 2, 3, 1))
    col = im2col_nhwc(img, filter_h, filter_w, stride, pad, pad_value)
    _, out_h, out_w, _, k = col.shape
    return xp.reshape(col, (n * out_h * out_w, c * k))


def add_window_slices(
    parts: list[Array],
    input_shape: tuple[int, ...],
    filter_h: int,
    filter_w: int,
    stride: int,
    pad: int,
) -> Array:
    """The adjoint of `window_slices`: images ``(N, H, W, C)`` from one array per offset.

    ``parts[k]`` (shape ``(N, out_h, out_w, C)``) is added back where offset ``k`` of every
    window took its values from. Windows that tile the image (stride = window, no padding) are
    interleaved by two stacks, each copying whole channel rows; otherwise each part is padded
    with zeros to the padded image's size, at its offset, and the parts are summed.
    """
    xp = namespace(parts[0])
    n, c, h, w = input_shape
    out_h, out_w = _check_geometry(tuple(input_shape), filter_h, filter_w, stride, pad)
    if not (stride == filter_h == filter_w and pad == 0):
        return _add_offsets(parts, (n, c, h, w), filter_w, stride, pad)
    rows = []
    for y in range(filter_h):
        row = xp.stack(parts[y * filter_w : (y + 1) * filter_w], axis=3)  # (N, OH, OW, fw, C)
        rows.append(xp.reshape(row, (n, out_h, out_w * filter_w, c)))
    img = xp.reshape(xp.stack(rows, axis=2), (n, out_h * filter_h, out_w * filter_w, c))
    if (out_h * filter_h, out_w * filter_w) != (h, w):  # rows and columns no window reached
        img = pad_hw(img, (0, 0), (h - out_h * filter_h, w - out_w * filter_w), 0.0)
    return img


def col2im_nhwc(
    col: Array, input_shape: tuple[int, ...], filter_h: int, filter_w: int, stride: int, pad: int
) -> Array:
    """`col2im` from ``(N, out_h, out_w, C, filter_h, filter_w)`` to images in ``(N, H, W, C)``.

    Every window's values are added back where `im2col` took them from: where windows overlap,
    their contributions add up.
    """
    xp = namespace(col)
    n, c, h, w = input_shape
    out_h, out_w = _check_geometry(tuple(input_shape), filter_h, filter_w, stride, pad)
    if stride == filter_h == filter_w:
        return _tile_back(col, (n, c, h, w), stride, pad)
    col = xp.reshape(col, (n, out_h, out_w, c, filter_h * filter_w))
    parts = [col[..., k] for k in range(filter_h * filter_w)]
    return _add_offsets(parts, (n, c, h, w), filter_w, stride, pad)


def _add_offsets(
    parts: list[Array], input_shape: tuple[int, int, int, int], filter_w: int, stride: int, pad: int
) -> Array:
    """The images ``(N, H, W, C)`` that offset ``k`` of every window took ``parts[k]`` from,
    summed over the offsets: each part (spread out by the stride) is padded with zeros to the
    padded image's size, at its offset, and added. Memory stays at a few images, where padding
    the whole ``col`` would copy it at a larger size (the first layer of a conv net has one
    channel and 25 offsets: the parts are small, the image is small)."""
    _, _, h, w = input_shape
    hp, wp = h + 2 * pad, w + 2 * pad
    img = None
    # Row by row of the filter: the row's offsets are placed along W and summed at the parts'
    # height, then the sum is placed once along H (fewer and smaller copies than placing each
    # part in the whole image).
    for y in range(len(parts) // filter_w):
        line = None
        for x in range(filter_w):
            part = parts[y * filter_w + x]
            if stride > 1:
                part = _dilate(part, stride)  # window (i, j) starts at (i*stride, j*stride)
            cols = part.shape[2]
            placed = _pad_or_crop_hw(part, (0, x), (0, wp - x - cols))
            line = placed if line is None else line + placed
        assert line is not None  # filter_w >= 1
        placed = _pad_or_crop_hw(line, (y, 0), (hp - y - line.shape[1], 0))
        img = placed if img is None else img + placed
    assert img is not None  # filter_h >= 1
    return img[:, pad : pad + h, pad : pad + w, :] if pad else img


def col2im(
    col: Array,
    input_shape: tuple[int, ...],
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    pad: int = 0,
) -> Array:
    """Add rows of windows back into images: the adjoint of `im2col`, as the book's ``col2im``.

    Parameters
    ----------
    col : array, shape (N*out_h*out_w, C*filter_h*filter_w)
        Rows as `im2col` returns them (for a backward pass: the gradient with respect to them).
    input_shape : tuple
        ``(N, C, H, W)``, the shape of the images.
    filter_h, filter_w, stride, pad : int
        As given to `im2col`.

    Returns
    -------
    array, shape (N, C, H, W)
        The sum, at each pixel, of every row element that `im2col` copied from that pixel; the
        padding is dropped.
    """
    xp = namespace(col)
    n, c, h, w = (int(d) for d in input_shape)
    out_h, out_w = _check_geometry((n, c, h, w), filter_h, filter_w, stride, pad)
    if tuple(col.shape) != (n * out_h * out_w, c * filter_h * filter_w):
        raise ValueError(
            f"col must have shape ({n * out_h * out_w}, {c * filter_h * filter_w}) for images "
            f"of shape {(n, c, h, w)}; got {tuple(col.shape)}"
        )
    img = col2im_nhwc(col, (n, c, h, w), filter_h, filter_w, stride, pad)
    return xp.permute_dims(img, (0, 3, 1, 2))


def _shape4(a: Array) -> tuple[int, int, int, int]:
    if a.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got shape {tuple(a.shape)}")
    n, c, h, w = (int(d) for d in a.shape)
    return n, c, h, w


def _dilate(col: Array, stride: int) -> Array:
    """Put ``stride - 1`` zeros between the entries of axes 1 and 2 (rows and columns)."""
    xp = namespace(col)
    n, oh, ow, *rest = col.shape
    zeros = xp.zeros(tuple(col.shape), dtype=col.dtype, device=device(col))
    # Interleave along axis 1: stack [col, 0, 0, ...] on a new axis after it, then merge the two.
    col = xp.stack([col] + [zeros] * (stride - 1), axis=2)
    col = xp.reshape(col, (n, oh * stride, ow, *rest))[:, : stride * (oh - 1) + 1, ...]
    rows = col.shape[1]
    zeros = xp.zeros(tuple(col.shape), dtype=col.dtype, device=device(col))
    col = xp.stack([col] + [zeros] * (stride - 1), axis=3)
    return xp.reshape(col, (n, rows, ow * stride, *rest))[:, :, : stride * (ow - 1) + 1, ...]


def transposed_windows(
    dout: Array, input_hw: tuple[int, int], filter_h: int, filter_w: int, stride: int, pad: int
) -> Array:
    """The windows of a convolution's output gradient that make its input gradient.

    A convolution's input gradient is the output gradient, spread out by the stride, convolved
    with the filters rotated by 180 degrees: each input pixel gathers every output that saw it.
    This returns that convolution's windows, offset by offset, as `im2col` would:
    ``(N, H, W, filter_h*filter_w, FN)`` for ``dout`` of shape ``(N, out_h, out_w, FN)``. A
    matrix product with the rotated filters then gives the input gradient, with no ``col2im``
    (whose adds into shifted slices cost several times more).
    """
    h, w = input_hw
    spread = _dilate(dout, stride) if stride > 1 else dout
    # Rows before and after so that window (u, v) of a filter_h x filter_w filter reads the
    # outputs whose windows covered input pixel (u, v); negative means rows to drop.
    before = (filter_h - 1 - pad, filter_w - 1 - pad)
    after = (
        h + filter_h - 1 - before[0] - spread.shape[1],
        w + filter_w - 1 - before[1] - spread.shape[2],
    )
    spread = _pad_or_crop_hw(spread, before, after)
    slices = window_slices(spread, filter_h, filter_w)
    return namespace(dout).stack(slices, axis=3)


def _pad_or_crop_hw(img: Array, before: tuple[int, int], after: tuple[int, int]) -> Array:
    """`pad_hw` with zeros, where a negative count drops that many rows or columns instead."""
    h, w = img.shape[1], img.shape[2]
    top, bottom = max(-before[0], 0), h - max(-after[0], 0)
    left, right = max(-before[1], 0), w - max(-after[1], 0)
    img = img[:, top:bottom, left:right, :]
    pads_before = (max(before[0], 0), max(before[1], 0))
    pads_after = (max(after[0], 0), max(after[1], 0))
    if pads_before == (0, 0) and pads_after == (0, 0):
        return img
    return pad_hw(img, pads_before, pads_after, 0.0)


def _tile_back(col: Array, input_shape: tuple[int, ...], size: int, pad: int) -> Array:
    """`col2im_nhwc` for windows that tile the image (stride = window): one permutation.

    No two windows share a pixel, so nothing is added: each window is put back in place, and
    the rows and columns no window reached (past the last whole window) are zeros.
    """
    xp = namespace(col)
    n, c, h, w = input_shape
    out_h, out_w = conv_output_size(h, size, size, pad), conv_output_size(w, size, size, pad)
    col = xp.reshape(col, (n, out_h, out_w, c, size, size))
    img = xp.reshape(xp.permute_dims(col, (0, 1, 4, 2, 5, 3)), (n, out_h * size, out_w * size, c))
    hp, wp = h + 2 * pad, w + 2 * pad
    if (out_h * size, out_w * size) != (hp, wp):
        img = pad_hw(img, (0, 0), (hp - out_h * size, wp - out_w * size), 0.0)
    return img[:, pad : pad + h, pad : pad + w, :] if pad else img
