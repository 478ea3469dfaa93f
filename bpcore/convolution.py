"""The book's chapter 7 layers, `Convolution` and `Pooling` (also in `bpcore.layers`).

Both work on windows of the image, taken offset by offset as strided slices (`bpcore.im2col`),
or, for most stride-1 convolutions, as shifted slices of the flattened batch
(`bpcore.shifted_windows`), on the Array API; a library's own convolution may run behind
`Convolution` instead (`bpcore.kernels`), tested equal to this code.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device

from .backends import Array, index_dtype, namespace
from .im2col import add_window_slices, check_window_int, transposed_windows, window_slices
from .kernels import native_conv2d, native_max_pool2d
from .precision import is_half
from .shifted_windows import (
    crop_images,
    flat_images,
    offset_starts,
    shifted_grams,
    shifted_products,
    shifted_windows_pay,
)

__all__ = ["Convolution", "Pooling"]


def require_forward(value: Any, layer: object) -> Any:
    """``value`` (what a layer's forward pass kept); RuntimeError naming the layer when it is
    None, because backward was called before forward (every layer of `bpcore.layers`)."""
    if value is None:
        raise RuntimeError(f"{type(layer).__name__}.backward called before forward")
    return value


def _column_sums(rows: Array) -> Array:
    """``sum(rows, axis=0)`` of a matrix: a conv layer's bias gradient from its output gradient.

    In float32 and float64, as the product ``ones @ rows``: NumPy sums over a C-ordered array's
    first axis with a strided loop, about eight times slower than the product at a conv layer's
    shapes (57,600 x 30 in SimpleConvNet: 1.2 ms against 0.14 on a 2-core CPU). Both add the
    rows one after another; half precision keeps `sum`, which accumulates in a wider type where
    the library does.
    """
    xp = namespace(rows)
    if is_half(xp, rows.dtype):
        return xp.sum(rows, axis=0)
    return xp.ones(rows.shape[0], dtype=rows.dtype, device=device(rows)) @ rows


class Convolution:
    """2-d convolution (cross-correlation, as in the book) by ``im2col`` and one matrix product.

    With stride 1, more than one channel and little padding, the windows are instead read as
    shifted slices of the flattened batch (`bpcore.shifted_windows`): one product per filter
    offset, and no im2col matrix.

    Parameters
    ----------
    W : array, shape (FN, C, FH, FW)
        ``FN`` filters of ``C`` channels and ``FH x FW`` pixels.
    b : array, shape (FN,)
    stride : int, default 1
    pad : int, default 0
        Zeros added on every side of the image.

    Attributes
    ----------
    dW, db : array or None
        Gradients from the last backward pass.
    x : array or None
        The input of the last forward pass.
    col : array or None
        Its windows as rows, shape ``(N*OH*OW, FH*FW*C)``: the layer's largest buffer. The
        columns are ordered by filter offset, then channel (`bpcore.im2col` returns the book's
        order, channel first): the same matrix with its columns permuted. None where the layer
        took shifted slices (no such matrix is built) or the library's own convolution ran
        (``kernel``).
    col_W : array or None
        The filters as columns, shape ``(FH*FW*C, FN)``, in the same order; None where the
        library's own convolution ran.
    kernel : object or None
        The library's own convolution, where the last forward pass used it (PyTorch's, or
        XLA's on JAX; see `bpcore.kernels`, and ``BPCORE_REFERENCE_KERNELS=1`` to force this
        class's own code).
    """

    param_names = ("W", "b")
    computes_input = True  # see Layer

    def __init__(self, W: Array, b: Array | float, stride: int = 1, pad: int = 0) -> None:
        if isinstance(b, (int, float)) and not isinstance(b, bool):
            # One bias for every filter, as the book's ch07/apply_filter.py passes (b = 0).
            b = namespace(W).full((W.shape[0],), float(b), dtype=W.dtype, device=device(W))
        if W.ndim != 4 or getattr(b, "ndim", None) != 1 or b.shape[0] != W.shape[0]:
            raise ValueError(
                f"Convolution expects W of shape (FN, C, FH, FW) and b of shape (FN,) or a "
                f"number; got W {tuple(W.shape)} and b {getattr(b, 'shape', b)!r}"
            )
        self.W = W
        self.b = b
        self.stride = check_window_int(stride, "stride", 1)
        self.pad = check_window_int(pad, "pad", 0)
        self.x: Array | None = None
        self.col: Array | None = None
        self.col_W: Array | None = None
        self.dW: Array | None = None
        self.db: Array | None = None
        self.kernel: Any = None  # the library's own convolution, where forward used it
        # The flat, padded input, where forward took shifted slices (else None).
        self._flat: Array | None = None
        # A one-channel layer's windows as rows of the transposed im2col matrix, and a last row
        # of ones for the bias (else None).
        self._col_t: Array | None = None

    def __repr__(self) -> str:
        fn, c, fh, fw = self.W.shape
        return f"Convolution({c}->{fn}, {fh}x{fw}, stride={self.stride}, pad={self.pad})"

    def forward(self, x: Array) -> Array:
        """Return the convolution of ``x`` (N, C, H, W) with the filters, shape (N, FN, OH, OW)."""
        xp = namespace(x, self.W, self.b)
        fn, c, fh, fw = self.W.shape
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(
                f"Convolution expects input of shape (N, {c}, H, W); got {tuple(x.shape)}"
            )
        n, _, h, w = x.shape
        self.kernel = native_conv2d(x, self.W, self.stride, self.pad)
        self._flat, self._col_t = None, None
        if self.kernel is not None:  # the library's own (bpcore.kernels), tested equal to this
            self.x, self.col, self.col_W = x, None, None
            return self.kernel.forward(x, self.W, self.b, self.stride, self.pad)
        wxp = namespace(self.W)  # the filters' own namespace: on Dask they are NumPy arrays
        self.col_W = wxp.reshape(wxp.permute_dims(self.W, (0, 2, 3, 1)), (fn, fh * fw * c)).T
        if shifted_windows_pay(c, (h, w), (fh, fw), self.stride, self.pad):
            return self._forward_shifted(x)
        # The windows of the image in (N, H, W, C) order, offset by offset: the book's im2col
        # matrix with its columns ordered by offset, then channel (the book's: channel, then
        # offset), so that each offset's slice is copied whole, and the filters to match.
        slices = window_slices(xp.permute_dims(x, (0, 2, 3, 1)), fh, fw, self.stride, self.pad)
        _, out_h, out_w, _ = slices[0].shape
        rows = n * out_h * out_w
        self.x = x
        if c == 1 and not is_half(xp, x.dtype):
            # One channel (a first layer): stacked along a new last axis, each offset would be
            # copied one element at a time (1.5 ms in SimpleConvNet's layer, against 0.4 ms);
            # stacked as the rows of the transposed matrix, each is copied in image rows, and
            # the product reads the transpose in place. A row of ones below them carries the
            # bias through the product (adding it after, broadcast over 30 filters, took 0.6
            # ms) and gives its gradient with the filters' (`_set_param_grads`). Half precision
            # adds and sums the bias apart, where the library accumulates wider.
            ones = xp.ones(slices[0].shape, dtype=x.dtype, device=device(x))
            col_t = xp.reshape(xp.stack([*slices, ones], axis=0), (fh * fw + 1, rows))
            self._col_t = col_t
            self.col = xp.matrix_transpose(col_t[: fh * fw, :])
            with_bias = wxp.concat([self.col_W, wxp.reshape(self.b, (1, fn))], axis=0)
            out = xp.matrix_transpose(col_t) @ with_bias
            return xp.permute_dims(xp.reshape(out, (n, out_h, out_w, fn)), (0, 3, 1, 2))
        self.col = xp.reshape(xp.stack(slices, axis=3), (rows, fh * fw * c))
        out = self.col @ self.col_W
        out += self.b  # into the product's fresh array
        return xp.permute_dims(xp.reshape(out, (n, out_h, out_w, fn)), (0, 3, 1, 2))

    def _forward_shifted(self, x: Array) -> Array:
        """`forward` by shifted slices of the flattened batch (`bpcore.shifted_windows`)."""
        xp = namespace(x)
        _fn, _c, fh, fw = self.W.shape
        n, _, h, w = x.shape
        p = self.pad
        hp, wp = h + 2 * p, w + 2 * p
        starts = offset_starts(fh, fw, wp)
        flat = flat_images(xp.permute_dims(x, (0, 2, 3, 1)), (p, p), (p, p), tail=starts[-1])
        self.x, self.col, self._flat = x, None, flat
        mats = [xp.matrix_transpose(m) for m in self._offset_filters(xp)]  # (C, FN)
        out = shifted_products(flat, mats, starts, n * hp * wp)
        out = crop_images(out, (n, hp, wp), (0, hp - fh + 1), (0, wp - fw + 1))
        # The bias, added as the crop is copied: (N, OH, OW, FN) in memory, as the im2col path
        # leaves it (the next layers, pooling above all, are several times slower on another).
        out = out + xp.asarray(self.b)
        return xp.permute_dims(out, (0, 3, 1, 2))

    def _offset_filters(self, xp: Any) -> list[Array]:
        """The filters at each offset, row by row, as ``(FN, C)`` matrices in ``xp``."""
        W = xp.asarray(self.W)  # Dask: its filters are NumPy arrays
        _fn, _c, fh, fw = W.shape
        return [W[:, :, y, x] for y in range(fh) for x in range(fw)]

    def _backward_shifted(self, dout: Array, input_grad: bool) -> Array | None:
        """`backward` after `_forward_shifted`: the output gradient flattened on the padded
        grid (zeros where no window was), one product per offset for the filters' gradient,
        and the input gradient as the sum over offsets of the output gradient shifted the other
        way times the filters at that offset, transposed."""
        x, flat = require_forward(self.x, self), require_forward(self._flat, self)
        xp = namespace(dout, flat)
        fn, c, fh, fw = self.W.shape
        p, (n, _, h, w) = self.pad, x.shape
        hp, wp = h + 2 * p, w + 2 * p
        starts = offset_starts(fh, fw, wp)
        last, length = starts[-1], n * hp * wp
        oh, ow = hp - fh + 1, wp - fw + 1
        d = xp.permute_dims(dout, (0, 2, 3, 1))
        grad = flat_images(d, (0, 0), (hp - oh, wp - ow), head=last)  # (last + N*Hp*Wp, FN)
        rows = grad[last:, :]  # (N*Hp*Wp, FN): zeros where no window was, which add nothing
        self.db = _column_sums(rows)
        grams = shifted_grams(flat, rows, starts, n)  # (C, FN) per offset
        dW = xp.reshape(xp.stack(grams, axis=0), (fh, fw, c, fn))
        self.dW = xp.permute_dims(dW, (3, 2, 0, 1))
        if not input_grad:
            return None
        mats = self._offset_filters(xp)  # (FN, C)
        dx = shifted_products(grad, mats, [last - s for s in starts], length)
        return xp.permute_dims(crop_images(dx, (n, hp, wp), (p, p + h), (p, p + w)), (0, 3, 1, 2))

    def backward(self, dout: Array) -> Array:
        """Set ``dW`` and ``db``; return the gradient with respect to the input.

        The book's ``col2im(dout @ col_W.T)``, by whichever of two equal computations moves
        less memory:

        * with fewer input channels than filters (a first layer: one channel, 30 filters), as
          the book does: the product gives each window's gradient, ``(N*OH*OW, FH*FW*C)``, and
          `bpcore.im2col.add_window_slices` adds them back, one offset at a time;
        * otherwise, as the convolution of the spread-out ``dout`` with the rotated filters
          (`bpcore.im2col.transposed_windows`): one stack of ``(N*H*W, FH*FW*FN)`` and one
          product, no adds into shifted slices.

        The first would cost ``FN / C`` times less memory where ``FN > C``; the second saves
        ``FH*FW`` passes over the image where ``FN <= C``. Where forward took shifted slices,
        backward takes them too (`bpcore.shifted_windows`): no matrix larger than the padded
        image, for either gradient.
        """
        x = require_forward(self.x, self)
        if self.kernel is not None:
            grads = self.kernel.backward(x, self.W, dout, self.stride, self.pad, True)
            dx, self.dW, self.db = grads
            return dx
        if self._flat is not None:
            dx = self._backward_shifted(dout, True)
            assert dx is not None
            return dx
        xp = namespace(dout)
        fn, c, _fh, _fw = self.W.shape
        n, _, h, w = x.shape
        rows = self._dout_rows(dout)  # once, for the parameters and the input
        self._set_param_grads(rows)
        if c < fn:
            # Each window's gradient, transposed: a row per (offset, channel), so that each
            # offset's part is read whole when it is added back (the book's dcol would be read
            # with a stride of FH*FW*C elements).
            col_W = xp.asarray(require_forward(self.col_W, self))  # Dask: its filters NumPy
            dcol_t = col_W @ xp.matrix_transpose(rows)
            del rows  # not held while the windows are added back: the book's peak, no more
            return self._input_grad_by_windows(dcol_t, dout.shape, (n, c, h, w))
        return self._input_grad_by_transposed(dout, (n, c, h, w))

    def _input_grad_by_windows(
        self, dcol_t: Array, out_shape: tuple[int, ...], in_shape: tuple[int, int, int, int]
    ) -> Array:
        """The book's way: every window's gradient, ``dcol_t = col_W @ dout_rows.T`` (the
        book's ``dcol`` transposed: rows by offset, then channel), added back where the window
        was."""
        xp = namespace(dcol_t)
        _fn, c, fh, fw = self.W.shape
        n, _, h, w = in_shape
        out_h, out_w = out_shape[2], out_shape[3]
        parts = [
            xp.permute_dims(
                xp.reshape(dcol_t[k * c : (k + 1) * c, :], (c, n, out_h, out_w)), (1, 2, 3, 0)
            )
            for k in range(fh * fw)
        ]
        img = add_window_slices(parts, (n, c, h, w), fh, fw, self.stride, self.pad)
        return xp.permute_dims(img, (0, 3, 1, 2))

    def _input_grad_by_transposed(self, dout: Array, in_shape: tuple[int, int, int, int]) -> Array:
        """The convolution of the spread-out output gradient with the rotated filters."""
        xp = namespace(dout)
        fn, c, fh, fw = self.W.shape
        n, _, h, w = in_shape
        windows = transposed_windows(
            xp.permute_dims(dout, (0, 2, 3, 1)), (h, w), fh, fw, self.stride, self.pad
        )
        wxp = namespace(self.W)
        rotated = wxp.flip(self.W, axis=(2, 3))  # (FN, C, FH, FW), turned by 180 degrees
        rotated = wxp.reshape(wxp.permute_dims(rotated, (2, 3, 0, 1)), (fh * fw * fn, c))
        dx = xp.reshape(windows, (n * h * w, fh * fw * fn)) @ rotated
        return xp.permute_dims(xp.reshape(dx, (n, h, w, c)), (0, 3, 1, 2))

    def backward_params(self, dout: Array) -> None:
        """Set ``dW`` and ``db`` only: for a first layer, whose input gradient nobody uses."""
        if self.kernel is not None:
            x = require_forward(self.x, self)
            grads = self.kernel.backward(x, self.W, dout, self.stride, self.pad, False)
            _, self.dW, self.db = grads
            return
        if self._flat is not None:
            self._backward_shifted(dout, False)
            return
        self._set_param_grads(self._dout_rows(dout))

    def _dout_rows(self, dout: Array) -> Array:
        """The output gradient as rows, ``(N*OH*OW, FN)``: the order of the im2col rows."""
        xp = namespace(dout)
        return xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, self.W.shape[0]))

    def _set_param_grads(self, rows: Array) -> None:
        """``dW`` and ``db`` from the output gradient as rows, ``(N*OH*OW, FN)``."""
        col = require_forward(self.col, self)
        xp = namespace(rows, col)
        fn, c, fh, fw = self.W.shape
        if self._col_t is not None:  # a one-channel layer: the bias's row of ones included
            grads = self._col_t @ rows  # (FH*FW + 1, FN)
            self.db = grads[fh * fw, :]
            self.dW = xp.reshape(xp.matrix_transpose(grads[: fh * fw, :]), (fn, 1, fh, fw))
            return
        self.db = _column_sums(rows)
        dW = xp.reshape((col.T @ rows).T, (fn, fh, fw, c))  # columns by offset, then channel
        self.dW = xp.permute_dims(dW, (0, 3, 1, 2))


class Pooling:
    """Max pooling over ``pool_h x pool_w`` windows: the maximum of the book's im2col rows.

    The rows are not built: the maximum is taken over the window offsets, one strided slice of
    the image each (the im2col matrix's columns), which gives the same values.

    ``backward`` sends each window's gradient to the element that was the maximum; where several
    elements tie, to the first of them in the window, row by row (``argmax``'s choice, as in
    the book and in ``torch.nn.functional.max_pool2d``). Padding holds ``-inf``, so it never is
    the maximum (the book pads with zeros, which wins over negative inputs; after a ReLU, as in
    the book's networks, the two agree).

    Parameters
    ----------
    pool_h, pool_w : int
        The window's height and width.
    stride : int, default 1
    pad : int, default 0

    Attributes
    ----------
    x : array or None
        The input of the last forward pass.
    out : array or None
        Its maxima, shape ``(N, OH, OW, C)`` (computed on demand: the layer does not keep them,
        which a step's memory would carry until backward).
    arg_max : array
        Where each window's maximum was, an index into the window (computed on demand).
    kernel : object or None
        The library's own max pooling, where the last forward pass used it (PyTorch's; see
        `bpcore.kernels`).
    """

    computes_input = True

    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> None:
        self.pool_h = check_window_int(pool_h, "pool_h", 1)
        self.pool_w = check_window_int(pool_w, "pool_w", 1)
        self.stride = check_window_int(stride, "stride", 1)
        self.pad = check_window_int(pad, "pad", 0)
        self.x: Array | None = None
        self.kernel: Any = None  # the library's own max pooling, where forward used it
        # What backward reads: the kernel's own (PyTorch: the indices), or, on the layer's own
        # code, the offset of each window's first maximum, shape (N, OH, OW, C).
        self._state: Any = None

    def _windows(self, x: Array) -> list[Array]:
        """What each window offset sees of ``x``, in (N, H, W, C) order; padding is -inf."""
        xp = namespace(x)
        return window_slices(
            xp.permute_dims(x, (0, 2, 3, 1)),
            self.pool_h,
            self.pool_w,
            self.stride,
            self.pad,
            pad_value=-float("inf"),
        )

    def __repr__(self) -> str:
        return f"Pooling({self.pool_h}, {self.pool_w}, stride={self.stride}, pad={self.pad})"

    def forward(self, x: Array) -> Array:
        """Return the maximum of each window, shape (N, C, OH, OW)."""
        xp = namespace(x)
        if x.ndim != 4:
            raise ValueError(f"Pooling expects input of shape (N, C, H, W); got {tuple(x.shape)}")
        # The book's im2col rows, one column (filter offset) at a time, without stacking them:
        # a running maximum over the offsets (several times faster than a max along a short
        # last axis). Backward finds which offset held it.
        kernel = native_max_pool2d(x)
        native = kernel and kernel.forward(x, self.pool_h, self.pool_w, self.stride, self.pad)
        self.x, self.kernel = x, kernel if native else None
        if native:  # the library's own (bpcore.kernels), tested equal to the code below
            out, self._state = native
            return out
        slices = self._windows(x)
        # Where each window's maximum is, found on the way, while the slices are in cache: the
        # offset that last raised the running maximum strictly, that is the first maximum (row
        # by row), as argmax would choose. As a max over k of k * (s_k > running maximum), in
        # one byte an element: backward compares it with each offset instead of comparing the
        # image with the maxima again (four reads of the image, three times the time).
        out, first = slices[0], None
        codes = xp.uint8 if len(slices) <= 256 else index_dtype(xp)
        for k, s in enumerate(slices[1:], start=1):
            raised = xp.astype(s > out, codes)
            raised = raised if k == 1 else raised * k
            first = raised if first is None else xp.maximum(first, raised)
            out = xp.maximum(out, s)
        self._state = xp.zeros(out.shape, dtype=codes, device=device(x)) if first is None else first
        return xp.permute_dims(out, (0, 3, 1, 2))

    def backward(self, dout: Array) -> Array:
        """Return ``dout`` at each window's maximum, else 0 (summed where windows overlap)."""
        x, first = require_forward(self.x, self), require_forward(self._state, self)
        if self.kernel is not None:
            args = (self.pool_h, self.pool_w, self.stride, self.pad)
            return self.kernel.backward(x, dout, first, *args)
        xp = namespace(dout, first)
        d = xp.permute_dims(dout, (0, 2, 3, 1))
        n, c, h, w = (int(v) for v in x.shape)
        ph, pw = self.pool_h, self.pool_w
        oh, ow = int(first.shape[1]), int(first.shape[2])
        if self.stride == ph == pw and self.pad == 0 and (oh * ph, ow * pw) == (h, w):
            # Windows that tile the image (the book's 2x2, stride 2): the image-sized mask in
            # one comparison, each window's offsets (y, x) against its first maximum's offset,
            # broadcast in the image's own (N, OH, ph, OW, pw, C) order; made 0/1 in dout's
            # dtype and multiplied in place by dout's rows broadcast over the window. (A
            # multiplication, not where: see Relu.backward.)
            offsets = xp.reshape(
                xp.arange(ph * pw, dtype=first.dtype, device=device(first)), (1, 1, ph, 1, pw, 1)
            )
            mask = xp.reshape(first, (n, oh, 1, ow, 1, c)) == offsets
            dx = xp.astype(mask, d.dtype)
            dx *= xp.reshape(d, (n, oh, 1, ow, 1, c))
            return xp.permute_dims(xp.reshape(dx, (n, h, w, c)), (0, 3, 1, 2))
        parts = [d * xp.astype(first == k, d.dtype) for k in range(ph * pw)]
        dx = add_window_slices(parts, (n, c, h, w), ph, pw, self.stride, self.pad)
        return xp.permute_dims(dx, (0, 3, 1, 2))

    @property
    def out(self) -> Array | None:
        """The maxima of the last forward pass, shape (N, OH, OW, C); None before one."""
        if self.x is None:
            return None
        xp = namespace(self.x)
        slices = self._windows(self.x)
        out = slices[0]
        for s in slices[1:]:
            out = xp.maximum(out, s)
        return out

    @property
    def arg_max(self) -> Array:
        """Where each window's maximum is, as an index into the window, shape (N, OH, OW, C).

        The first such element row by row where several tie: on the layer's own code, the
        offsets that forward found and backward reads; after a library's kernel, computed on
        demand.
        """
        x, first = require_forward(self.x, self), require_forward(self._state, self)
        xp = namespace(x)
        if self.kernel is None:
            return xp.astype(first, index_dtype(xp))
        out = require_forward(self.out, self)
        slices = self._windows(x)
        index = xp.zeros(out.shape, dtype=index_dtype(xp), device=device(x))
        for k in range(len(slices) - 1, -1, -1):
            index = xp.where(slices[k] == out, k, index)
        return index
