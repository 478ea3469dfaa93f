"""``im2col`` and ``col2im`` against the book's definitions, written out here with loops."""

from __future__ import annotations

import numpy as np
import pytest

from bpcore import col2im, im2col, to_numpy
from bpcore.im2col import conv_output_size

# (N, C, H, W), filter_h, filter_w, stride, pad: square and not, overlapping windows and not,
# strides that do not divide the image, padding wider than the stride.
GEOMETRIES = [
    ((2, 3, 7, 5), 3, 2, 1, 0),
    ((2, 2, 7, 6), 3, 3, 2, 1),
    ((1, 2, 9, 7), 2, 2, 2, 0),
    ((2, 1, 9, 6), 4, 3, 3, 2),
    ((1, 2, 5, 5), 5, 5, 1, 0),
]


def _book_im2col(img, fh, fw, stride, pad):
    """The book's im2col, one window at a time: row (n, i, j), column (c, y, x)."""
    n, c, h, w = img.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    padded = np.pad(img, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    col = np.empty((n, oh, ow, c * fh * fw))
    for i in range(oh):
        for j in range(ow):
            window = padded[:, :, i * stride : i * stride + fh, j * stride : j * stride + fw]
            col[:, i, j, :] = window.reshape(n, -1)
    return col.reshape(n * oh * ow, -1)


def _book_col2im(col, shape, fh, fw, stride, pad):
    """Every row element added back to the pixel it came from; padding dropped."""
    n, c, h, w = shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    img = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    rows = col.reshape(n, oh, ow, c, fh, fw)
    for i in range(oh):
        for j in range(ow):
            img[:, :, i * stride : i * stride + fh, j * stride : j * stride + fw] += rows[:, i, j]
    return img[:, :, pad : pad + h, pad : pad + w]


@pytest.mark.parametrize(("shape", "fh", "fw", "stride", "pad"), GEOMETRIES)
def test_im2col_and_col2im_match_the_book(backend, rng, shape, fh, fw, stride, pad):
    img_host = rng.standard_normal(shape)
    img = backend.asarray(img_host)
    col = im2col(img, fh, fw, stride, pad)
    expected = _book_im2col(img_host, fh, fw, stride, pad)
    assert tuple(col.shape) == expected.shape
    np.testing.assert_array_equal(to_numpy(col), expected)

    rows_host = rng.standard_normal(expected.shape)
    rows = backend.asarray(rows_host)
    back = col2im(rows, shape, fh, fw, stride, pad)
    np.testing.assert_allclose(
        to_numpy(back), _book_col2im(rows_host, shape, fh, fw, stride, pad), rtol=1e-13
    )
    np.testing.assert_array_equal(to_numpy(rows), rows_host)  # not written to
    np.testing.assert_array_equal(to_numpy(img), img_host)
    # col2im is the adjoint of im2col: <im2col(x), r> == <x, col2im(r)>.
    assert float(np.sum(expected * rows_host)) == pytest.approx(
        float(np.sum(img_host * to_numpy(back))), rel=1e-12
    )


def test_output_size_is_the_books_floor():
    assert conv_output_size(28, 5) == 24
    assert conv_output_size(7, 3, stride=2, pad=1) == 4
    assert conv_output_size(9, 4, stride=3, pad=2) == 4
    assert conv_output_size(8, 4, stride=3, pad=0) == 2


@pytest.mark.parametrize(
    ("shape", "args", "message"),
    [
        ((2, 3, 4), (2, 2), "shape \\(N, C, H, W\\)"),
        ((1, 1, 3, 3), (4, 4), "does not fit"),
        ((1, 1, 4, 4), (2, 2, 0), "stride must be an integer >= 1"),
        ((1, 1, 4, 4), (2, 2, 1, -1), "pad must be an integer >= 0"),
        ((1, 1, 4, 4), (2.0, 2), "filter_h must be an integer"),
    ],
)
def test_bad_geometry_is_named(backend, shape, args, message):
    with pytest.raises(ValueError, match=message):
        im2col(backend.asarray(np.zeros(shape)), *args)


def test_col2im_checks_the_rows_fit(backend):
    with pytest.raises(ValueError, match=r"col must have shape \(8, 4\)"):
        col2im(backend.asarray(np.zeros((9, 4))), (2, 1, 3, 3), 2, 2)
