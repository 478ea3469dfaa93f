"""Stride-1 windows as shifted slices of the flattened, padded batch: a convolution with no
im2col matrix.

Lay a batch of images out pixel by pixel, channels last, every image padded and the images
one after another, as a matrix ``(N*Hp*Wp, C)`` (`flat_images`). For a window offset
``(y, x)``, what that offset sees of every window is then the same matrix shifted by
``y*Wp + x`` rows: a contiguous slice. A stride-1 convolution is the sum, over the offsets, of
that slice times the filters at that offset, ``(C, FN)`` (`shifted_products`), and its output
lands on the same padded grid, where the rows past each image's last window hold values nobody
reads (`crop_images` drops them). The filters' gradient is one product per offset too
(`shifted_grams`), and the input gradient is the output gradient's slices shifted the other
way, times the filters transposed.

The im2col matrix (`bpcore.im2col`) copies the image 9 to 25 times in runs of ``C`` values,
which on NumPy costs several times the products themselves; here nothing larger than the
padded image is built. The price is the padded grid: ``Hp*Wp`` positions per image where
``OH*OW`` are needed, and one small product per offset instead of one large one, which is why
`Convolution` takes this path only where it pays (`shifted_windows_pay`).
"""

from __future__ import annotations

from .backends import Array, namespace
from .im2col import pad_axis, pad_hw

__all__ = [
    "MAX_WASTE",
    "crop_images",
    "flat_images",
    "offset_starts",
    "shifted_grams",
    "shifted_products",
    "shifted_windows_pay",
]

# The largest share of padded-grid positions, over those a convolution needs, at which the
# shifted slices still beat the im2col rows. Measured on NumPy (2 cores, batch 100, each
# layer of DeepConvNet forward and backward): 28x28 with padding 1 (a share of 1.15) takes a
# fifth of the time, 14x14 with padding 1 or 2 (1.31, 1.27) two thirds; 8x8 with padding 1
# (1.56) is as fast forward and up to a half slower backward.
MAX_WASTE = 1.4


def shifted_windows_pay(
    channels: int, input_hw: tuple[int, int], filter_hw: tuple[int, int], stride: int, pad: int
) -> bool:
    """Whether a convolution of this geometry should take the shifted slices: stride 1, more
    than one input channel (with one, each offset's product would be an outer product, and
    the im2col matrix is the image's size times the window's), and a padded grid at most
    `MAX_WASTE` times the output."""
    (h, w), (fh, fw) = input_hw, filter_hw
    hp, wp = h + 2 * pad, w + 2 * pad
    return stride == 1 and channels > 1 and hp * wp <= MAX_WASTE * (hp - fh + 1) * (wp - fw + 1)


def offset_starts(filter_h: int, filter_w: int, row_length: int) -> list[int]:
    """Where offset ``(y, x)`` of every window starts in flat images of rows of
    ``row_length`` pixels: ``y*row_length + x``, offsets row by row."""
    return [y * row_length + x for y in range(filter_h) for x in range(filter_w)]


def flat_images(
    img: Array,
    before: tuple[int, int],
    after: tuple[int, int],
    head: int = 0,
    tail: int = 0,
) -> Array:
    """``img`` (N, H, W, C) as ``(head + N*Hp*Wp + tail, C)``: each image with ``before``
    (rows, columns) of zeros above and left of it and ``after`` below and right, the images
    one after another, and ``head`` and ``tail`` rows of zeros around them all so that every
    shifted slice of ``N*Hp*Wp`` rows stays inside."""
    padded = pad_hw(img, before, after, 0.0)
    flat = namespace(img).reshape(padded, (-1, img.shape[3]))
    return pad_axis(flat, 0, head, tail, 0.0)


def shifted_products(flat: Array, mats: list[Array], starts: list[int], length: int) -> Array:
    """``sum_k flat[starts[k] : starts[k] + length] @ mats[k]``: each slice is read by its
    product where it lies, nothing stacked."""
    total = None
    for s, mat in zip(starts, mats, strict=True):
        term = flat[s : s + length, :] @ mat
        if total is None:
            total = term
        else:
            total += term  # into the first product's fresh array (a new array on JAX)
    assert total is not None  # at least one offset
    return total


def shifted_grams(flat: Array, other: Array, starts: list[int], images: int) -> list[Array]:
    """``flat[s : s + len(other)].T @ other`` for each start: the filters' gradient at each
    offset, from the flat input and the flat output gradient of ``images`` padded images.

    Taken image by image and summed: one long product (inner dimension ``N*Hp*Wp``) is about
    twice as slow on NumPy's BLAS as ``N`` short ones whose operands stay in cache.
    """
    xp = namespace(flat, other)
    length, width = other.shape
    per_image = xp.reshape(other, (images, length // images, width))
    grams = []
    for s in starts:
        part = xp.reshape(flat[s : s + length, :], (images, length // images, flat.shape[1]))
        grams.append(xp.sum(xp.matrix_transpose(part) @ per_image, axis=0))
    return grams


def crop_images(
    flat: Array, grid: tuple[int, int, int], rows: tuple[int, int], cols: tuple[int, int]
) -> Array:
    """``flat`` ``(N*Hp*Wp, C)`` on the padded grid ``(N, Hp, Wp)`` as images (N, h, w, C):
    rows ``rows[0]:rows[1]`` and columns ``cols[0]:cols[1]`` of each, a view where the library
    makes one."""
    xp = namespace(flat)
    n, hp, wp = grid
    img = xp.reshape(flat, (n, hp, wp, flat.shape[1]))
    return img[:, rows[0] : rows[1], cols[0] : cols[1], :]
