"""The book's layers (chapters 5 to 7), each with its forward and backward pass side by side.

Every layer takes its namespace from the arrays it is given (``array_namespace``, cached by
array type in ``bpcore.backends.namespace``), so the same code runs on NumPy, CuPy, PyTorch,
array-api-strict or any other Array API library.

Two rules make that work and keep the layers correct:

* a layer never writes into its input ``x``, its ``dout``, or any array it was given (the book's
  ``Relu.backward`` zeroes the caller's ``dout`` in place; JAX arrays could not even allow it);
* no assignment through boolean masks or integer-array indices: ``where`` and comparisons against
  ``arange`` say the same thing portably.

What backward needs is kept from forward, preferably the output (``Relu`` and ``Sigmoid`` keep
``out``, not a mask or the input).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

from array_api_compat import device

from .backends import Array, backend_class_of, is_kind, namespace
from .convolution import Convolution, Pooling
from .convolution import require_forward as _require_forward
from .kernels import native_relu_backward
from .labels import are_distributions, one_hot
from .precision import accumulation_dtype

__all__ = [
    "Affine",
    "BatchNormalization",
    "Convolution",
    "Dropout",
    "Layer",
    "Pooling",
    "Relu",
    "Sigmoid",
    "SoftmaxWithLoss",
    "Tanh",
    "backward_params",
    "buffer_names",
    "computes_input",
    "draws_random",
    "holds_mask",
    "param_names",
    "takes_train_flg",
]


class Layer(Protocol):
    """What a network needs of a layer: ``forward`` and ``backward``, nothing else.

    Optional attributes say more, each read by the function below that says what it means,
    never by a network's guess: ``param_names`` (`param_names`), ``buffer_names``
    (`buffer_names`), ``takes_train_flg`` (`takes_train_flg`), ``computes_input``
    (`computes_input`), ``generator`` (`draws_random`), ``hold_mask`` (`holds_mask`) and
    ``backward_params`` (`backward_params`).
    """

    def forward(self, x: Array, /, *args: Any) -> Array:
        """The output (``train_flg`` may follow ``x``); keeps what ``backward`` needs."""

    def backward(self, dout: Array, /) -> Array:
        """The gradient with respect to the last input; keeps the parameters' gradients."""


def param_names(layer: Any) -> tuple[str, ...]:
    """The attributes holding ``layer``'s parameters (none by default), such as ``("W", "b")``;
    after ``backward``, each one's gradient is in ``d`` + its name (``dW``, ``db``)."""
    return tuple(getattr(layer, "param_names", ()))


def buffer_names(layer: Any) -> tuple[str, ...]:
    """The attributes holding ``layer``'s buffers (none by default): arrays that are not
    parameters but are saved with them (batch normalization's running statistics)."""
    return tuple(getattr(layer, "buffer_names", ()))


def takes_train_flg(layer: Any) -> bool:
    """Whether ``layer.forward`` takes ``train_flg`` (dropout, batch normalization)."""
    return bool(getattr(layer, "takes_train_flg", False))


def computes_input(layer: Any) -> bool:
    """Whether ``layer`` needs its input computed on Dask (shifted slices split lazy chunks)."""
    return bool(getattr(layer, "computes_input", False))


def draws_random(layer: Any) -> bool:
    """Whether ``layer`` draws random numbers (dropout's masks) with a seeded ``generator``."""
    return hasattr(layer, "generator")


def holds_mask(layer: Any) -> bool:
    """Whether ``layer`` has ``hold_mask``, which gradient checks set to reuse its last mask."""
    return hasattr(layer, "hold_mask")


def backward_params(layer: Any, dout: Array) -> None:
    """``layer``'s backward pass for its parameters' gradients only, where it offers one: the
    input's gradient, which nobody needs of the first layer, is skipped."""
    getattr(layer, "backward_params", layer.backward)(dout)


class Relu:
    """Rectified linear unit, ``max(x, 0)``.

    ``backward`` passes ``dout`` through where the output was positive and returns zeros
    elsewhere (the derivative at exactly 0 is taken as 0, as in the book).

    Attributes
    ----------
    out : array or None
        The output of the last forward pass, kept for backward.
    """

    def __init__(self) -> None:
        self.out: Array | None = None

    def __repr__(self) -> str:
        return "Relu()"

    def forward(self, x: Array) -> Array:
        """Return ``max(x, 0)`` elementwise (NaN stays NaN)."""
        self.out = namespace(x).maximum(x, 0.0)  # a Python scalar keeps x's dtype
        return self.out

    def backward(self, dout: Array) -> Array:
        """Return ``dout`` where the output was positive, else 0; ``dout`` is not modified."""
        out = _require_forward(self.out, self)
        kernel = native_relu_backward(out, dout)
        if kernel is not None:  # the library's own (bpcore.kernels), tested equal to the code below
            return kernel(out, dout)
        xp = namespace(out, dout)
        # The mask as 0/1 in dout's dtype, times dout, into that fresh array: the same values as
        # where(out > 0, dout, 0), and several times faster on large arrays (NumPy's where
        # branches per element on a mask that is close to random).
        dx = xp.astype(out > 0, dout.dtype)
        dx *= dout
        return dx


class Sigmoid:
    """Logistic sigmoid, ``1 / (1 + exp(-x))``, with ``dx = dout * out * (1 - out)``.

    Attributes
    ----------
    out : array or None
        The output of the last forward pass, kept for backward.
    """

    def __init__(self) -> None:
        self.out: Array | None = None

    def __repr__(self) -> str:
        return "Sigmoid()"

    def forward(self, x: Array) -> Array:
        """Return the sigmoid of ``x`` without overflowing for large ``|x|``."""
        xp = namespace(x)
        # exp(-|x|) lies in (0, 1], so neither branch can overflow (the book's exp(-x) does, with
        # a warning, for x < -709 in float64 and x < -88 in float32).
        e = xp.exp(-xp.abs(x))
        s = 1.0 / (1.0 + e)
        self.out = xp.where(x >= 0, s, e * s)
        return self.out

    def backward(self, dout: Array) -> Array:
        """Return ``dout * out * (1 - out)``."""
        out = _require_forward(self.out, self)
        return dout * (1.0 - out) * out


class Tanh:
    """Hyperbolic tangent, with ``dx = dout * (1 - out**2)``.

    Attributes
    ----------
    out : array or None
        The output of the last forward pass, kept for backward.
    """

    def __init__(self) -> None:
        self.out: Array | None = None

    def __repr__(self) -> str:
        return "Tanh()"

    def forward(self, x: Array) -> Array:
        """Return ``tanh(x)``."""
        self.out = namespace(x).tanh(x)
        return self.out

    def backward(self, dout: Array) -> Array:
        """Return ``dout * (1 - out**2)``."""
        out = _require_forward(self.out, self)
        return dout * (1.0 - out * out)


class Affine:
    """Fully connected layer, ``x @ W + b``.

    Input of any rank ``(N, d1, d2, ...)`` is flattened to ``(N, d1*d2*...)``; ``backward``
    returns ``dx`` in the input's original shape and keeps ``dW`` and ``db``.

    Parameters
    ----------
    W : array, shape (in_features, out_features)
    b : array, shape (out_features,)

    Attributes
    ----------
    W, b : array
        The parameters. A network rebinds them when its ``params`` change, so they may be
        replaced by new arrays (immutable backends) rather than updated in place.
    dW, db : array or None
        Gradients from the last backward pass.
    x : array or None
        The flattened input of the last forward pass.
    original_x_shape : tuple or None
        The shape of that input before flattening.
    """

    #: The attributes that are parameters: a network binds them to its ``params`` and reads
    #: their gradients from ``d`` + the name (``dW``, ``db``).
    param_names = ("W", "b")

    def __init__(self, W: Array, b: Array) -> None:
        if W.ndim != 2 or b.ndim != 1 or b.shape[0] != W.shape[1]:
            raise ValueError(
                f"Affine expects W of shape (in, out) and b of shape (out,); got W {W.shape} and "
                f"b {b.shape}"
            )
        self.W = W
        self.b = b
        self.x: Array | None = None
        self.original_x_shape: tuple[int, ...] | None = None
        self.dW: Array | None = None
        self.db: Array | None = None

    def __repr__(self) -> str:
        n_in, n_out = self.W.shape
        return f"Affine({n_in}, {n_out})"

    def forward(self, x: Array) -> Array:
        """Return ``x.reshape(N, -1) @ W + b``."""
        xp = namespace(x, self.W, self.b)
        n_in = self.W.shape[0]
        features = 1
        for d in x.shape[1:]:
            features *= d
        if x.ndim < 2 or features != n_in:
            raise ValueError(
                f"Affine expects input of shape (N, {n_in}) or (N, ...) with {n_in} features per "
                f"sample; got shape {tuple(x.shape)}"
            )
        self.original_x_shape = tuple(x.shape)
        self.x = x if x.ndim == 2 else xp.reshape(x, (x.shape[0], n_in))
        out = self.x @ self.W
        out += self.b  # into the product's fresh array: one large temporary fewer
        return out

    def backward(self, dout: Array) -> Array:
        """Set ``dW = x.T @ dout`` and ``db = sum(dout, axis=0)``; return ``dout @ W.T``."""
        self.backward_params(dout)
        dx = dout @ self.W.T
        return namespace(dx).reshape(dx, self.original_x_shape)

    def backward_params(self, dout: Array) -> None:
        """Set ``dW`` and ``db`` only: for a first layer, whose ``dx`` nobody uses.

        Saves the product ``dout @ W.T``, a third of the layer's backward cost.
        """
        x = _require_forward(self.x, self)
        self.dW = x.T @ dout
        self.db = namespace(x, dout).sum(dout, axis=0)


class SoftmaxWithLoss:
    """Softmax followed by the mean cross-entropy loss over the batch.

    ``t`` may be integer class labels of shape ``(N,)`` (or a column of them, ``(N, 1)``) or
    one-hot (or any probability) rows of shape ``(N, C)``. The loss uses log-sum-exp, so it is
    exact for large logits and needs no ``+1e-7`` inside a log. It is returned as a 0-d array of
    the input's backend: reading it as a Python number is left to the caller, since on a GPU
    that waits for the device. Half-precision scores (float16, bfloat16) are taken to float32
    first: the probabilities, the loss and the sums behind them are float32, and the gradient
    is cast back to the scores' dtype.

    Labels that are not classes (an integer outside ``[0, C)``) or rows that are not
    distributions (a negative entry, a sum away from 1) make the loss and the gradient NaN,
    without reading anything back: a wrong batch never gives a plausible number (the book's
    layer crashes on integer labels, or silently counts such a row as zero loss).

    Attributes
    ----------
    loss : array or None
        The 0-d loss of the last forward pass.
    y : array or None
        The softmax probabilities, shape ``(N, C)``.
    t : array or None
        The labels as they were passed to forward.
    labels_valid : array or None
        A 0-d boolean array: whether every label of the last forward pass was a class or a
        distribution. Stays on the device.
    """

    def __init__(self) -> None:
        self.loss: Array | None = None
        self.y: Array | None = None
        self.t: Array | None = None
        self.labels_valid: Array | None = None
        self._target: Array | None = None  # t as (N, C) rows in y's dtype, used by backward
        self._held: tuple[Array, ...] | None = None  # see holding_labels
        self._x_dtype: Any = None  # the scores' dtype, which backward's gradient has

    def __repr__(self) -> str:
        return "SoftmaxWithLoss()"

    def forward(self, x: Array, t: Array) -> Array:
        """Return the mean cross-entropy of ``softmax(x)`` against ``t`` as a 0-d array."""
        xp = namespace(x, t)
        self._x_dtype = x.dtype
        x = _accumulating(xp, x)
        held = self._held
        if (
            held is not None
            and t is held[0]
            and (held[2].shape, held[2].dtype) == (x.shape, x.dtype)
        ):
            _, t, target, valid = held
        else:
            t, target, valid = self._targets(x, t, xp)
        n = x.shape[0]
        shifted = x - xp.max(x, axis=1, keepdims=True)  # log-sum-exp: exp never overflows
        e = xp.exp(shifted)
        total = xp.sum(e, axis=1, keepdims=True)
        self.y = e / total
        log_y = shifted - xp.log(total)
        self.t = t
        self._target = target
        self.labels_valid = valid
        self.loss = xp.where(valid, -xp.sum(target * log_y) / n, xp.nan)
        return self.loss

    @contextlib.contextmanager
    def holding_labels(self, x: Array, t: Array) -> Iterator[None]:
        """A context in which forward passes given this very ``t`` (the same object) reuse its
        target rows and validity, built here once for scores shaped and typed like ``x``.

        For numerical gradients, whose thousands of forward passes take one batch of labels;
        the result of each pass is the same. The labels are read here: values written into
        ``t`` within the context are not seen (other arrays, other shapes and dtypes are built
        anew). Built eagerly, here: a program compiled within the context (JAX) then captures
        these arrays rather than tracers of its own.
        """
        held = self._held
        xp = namespace(x, t)
        self._held = (t, *self._targets(_accumulating(xp, x), t, xp))
        try:
            yield
        finally:
            self._held = held

    @staticmethod
    def _targets(x: Array, t: Array, xp: Any) -> tuple[Array, Array, Array]:
        """``t`` (a column of labels flattened), its rows in ``x``'s dtype, and whether all are
        valid (a 0-d boolean array); raises ValueError for scores or labels of another shape."""
        if x.ndim != 2:
            raise ValueError(f"SoftmaxWithLoss expects scores of shape (N, C); got {x.shape}")
        n, c = x.shape
        integral = is_kind(xp, t.dtype, "integral")
        if tuple(t.shape) == (n, 1) and c > 1 and integral:
            t = xp.reshape(t, (n,))  # a column of labels, as the book's ch07 gradient check has
        if t.ndim == 1 and t.shape[0] == n and integral:
            target = xp.astype(one_hot(t, c, xp, device(x)), x.dtype)
            # A row matches at most one class: n matches in all iff every label is a class.
            return t, target, xp.sum(target) == n
        if tuple(t.shape) == (n, c) and (integral or is_kind(xp, t.dtype, "real floating")):
            target = t if t.dtype == x.dtype else xp.astype(t, x.dtype)
            return t, target, are_distributions(target, xp)  # in the scores' precision
        raise ValueError(
            f"SoftmaxWithLoss expects labels as integers of shape ({n},) or one-hot rows of "
            f"shape ({n}, {c}); got {t.dtype} labels of shape {tuple(t.shape)}"
        )

    def backward(self, dout: Array | float = 1) -> Array:
        """Return ``dout * (y - t) / N``, the gradient of the mean loss with respect to ``x``."""
        y = _require_forward(self.y, self)
        xp = namespace(y)
        n = y.shape[0]
        if type(dout) in (int, float):  # a Python number keeps y's dtype
            dx = (y - self._target) * (dout / n)
        else:
            # A 0-d array (or a NumPy scalar, which is not a weak Python float): cast it to y's
            # dtype so that a float64 dout does not turn a float32 network's gradients into
            # float64.
            dx = (y - self._target) * (xp.astype(dout, y.dtype) / n)
        dx = xp.where(self.labels_valid, dx, xp.nan)
        return dx if dx.dtype == self._x_dtype else xp.astype(dx, self._x_dtype)


# -- chapter 6 ---------------------------------------------------------------------------------


class Dropout:
    """Dropout as in the book: in training, each input is kept with probability ``1 - ratio``.

    ``forward(x, train_flg=True)`` multiplies by a fresh random mask; at inference it scales by
    ``1 - dropout_ratio`` instead (the book's form, not the "inverted" dropout of PyTorch).

    The mask is drawn on the arrays' own device by ``generator``, a seeded source of uniform
    numbers from the backend (`bpcore.backends.Backend.random_generator`); a network seeds its
    dropout layers from its ``seed``. A standalone layer makes a generator from ``seed`` at its
    first forward pass.

    Parameters
    ----------
    dropout_ratio : float, default 0.5
        The probability of dropping an input, in [0, 1).
    seed : int, optional
        Seeds the generator this layer makes for itself (when none was given to it).

    Attributes
    ----------
    mask : array of bool or None
        Which inputs the last training pass kept.
    generator : object or None
        Where masks come from.
    hold_mask : bool
        While true, a training pass reuses ``mask`` (when it fits the input) instead of drawing
        a new one: gradient checks hold the mask fixed so that every loss sees the same network.
    """

    #: Whether ``forward`` takes the book's ``train_flg`` argument.
    takes_train_flg = True

    def __init__(self, dropout_ratio: float = 0.5, *, seed: Any = None) -> None:
        if isinstance(dropout_ratio, bool) or not isinstance(dropout_ratio, (int, float)):
            raise TypeError(f"dropout_ratio must be a number in [0, 1), got {dropout_ratio!r}")
        if not 0 <= dropout_ratio < 1:
            raise ValueError(f"dropout_ratio must be in [0, 1), got {dropout_ratio!r}")
        self.dropout_ratio = float(dropout_ratio)
        self.seed = seed
        self.generator: Any = None
        self.mask: Array | None = None
        self.hold_mask = False
        self._trained = True  # whether the last forward pass was a training pass

    def __repr__(self) -> str:
        return f"Dropout({self.dropout_ratio})"

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        """Return ``x * mask`` in training, ``x * (1 - dropout_ratio)`` otherwise."""
        xp = namespace(x)
        self._trained = bool(train_flg)
        if not train_flg:
            return x * (1.0 - self.dropout_ratio)
        if not (self.hold_mask and self.mask is not None and self.mask.shape == x.shape):
            if self.generator is None:
                cls = backend_class_of(x)
                self.generator = cls(xp, device(x)).random_generator(self.seed)
            dtype = "float64" if x.dtype == xp.float64 else "float32"
            self.mask = self.generator.random(tuple(x.shape), dtype) > self.dropout_ratio
        return x * xp.astype(self.mask, x.dtype)

    def backward(self, dout: Array) -> Array:
        """Return ``dout`` times what forward multiplied ``x`` by."""
        if not self._trained:
            return dout * (1.0 - self.dropout_ratio)
        mask = _require_forward(self.mask, self)
        return dout * namespace(dout).astype(mask, dout.dtype)


class BatchNormalization:
    """Batch normalization (Ioffe and Szegedy, 2015), as in the book.

    In training, each feature is normalized by the batch's mean and (biased) variance, then
    scaled by ``gamma`` and shifted by ``beta``; the running statistics move towards the batch's
    by ``1 - momentum``. At inference the running statistics are used. Input of shape
    ``(N, C, H, W)`` is normalized per feature ``(c, h, w)`` over the batch, as the book does
    (not per channel, as ``torch.nn.BatchNorm2d`` does): ``gamma`` then has ``C*H*W`` elements.
    Half-precision input (float16, bfloat16) is normalized in float32, statistics included;
    the output and the gradients have the dtypes of the input and the parameters.

    Parameters
    ----------
    gamma, beta : array, shape (D,)
        Scale and shift, ``D`` the number of features per sample.
    momentum : float, default 0.9
    running_mean, running_var : array of shape (D,), optional
        Zeros, on the input's device, when not given.

    Attributes
    ----------
    dgamma, dbeta : array or None
        Gradients from the last backward pass.
    running_mean, running_var : array or None
        The statistics inference uses: *buffers* (saved in checkpoints, not trained). Each
        training pass replaces them with new arrays; it never writes into the old ones.
    """

    param_names = ("gamma", "beta")
    buffer_names = ("running_mean", "running_var")
    takes_train_flg = True
    #: Added to the variance, as the book's ``10e-7``.
    eps = 1e-6

    def __init__(
        self,
        gamma: Array,
        beta: Array,
        momentum: float = 0.9,
        running_mean: Array | None = None,
        running_var: Array | None = None,
    ) -> None:
        if gamma.ndim != 1 or tuple(beta.shape) != tuple(gamma.shape):
            raise ValueError(
                f"BatchNormalization expects gamma and beta of one shape (D,); got "
                f"{tuple(gamma.shape)} and {tuple(beta.shape)}"
            )
        self.gamma = gamma
        self.beta = beta
        self.momentum = float(momentum)
        self.running_mean = running_mean
        self.running_var = running_var
        self.input_shape: tuple[int, ...] | None = None
        self.batch_size: int | None = None
        self.xc: Array | None = None
        self.xn: Array | None = None
        self.std: Array | None = None
        self.dgamma: Array | None = None
        self.dbeta: Array | None = None
        self._trained = True

    def __repr__(self) -> str:
        return f"BatchNormalization({self.gamma.shape[0]}, momentum={self.momentum})"

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        """Return ``gamma * (x - mean) / sqrt(var + eps) + beta``, features along axis 1 on."""
        xp = namespace(x, self.gamma)
        d = self.gamma.shape[0]
        self.input_shape = tuple(x.shape)
        x = x if x.ndim == 2 else xp.reshape(x, (x.shape[0], -1))
        if x.shape[1] != d:
            raise ValueError(
                f"BatchNormalization has {d} features but got input of shape {self.input_shape}"
            )
        if self.running_mean is None or self.running_var is None:
            self.running_mean = xp.zeros((d,), dtype=x.dtype, device=device(x))
            self.running_var = xp.zeros((d,), dtype=x.dtype, device=device(x))
        self._trained = bool(train_flg)
        out_dtype, acc = x.dtype, accumulation_dtype(xp, x.dtype)
        x, gamma, beta = _cast(xp, x, acc), _cast(xp, self.gamma, acc), _cast(xp, self.beta, acc)
        if train_flg:
            mu = xp.mean(x, axis=0)
            xc = x - mu
            var = xp.mean(xc * xc, axis=0)
            std = xp.sqrt(var + self.eps)
            self.batch_size = int(x.shape[0])
            # In the buffers' own dtype (that of the network's parameters), whatever the sums'.
            self.running_mean = _cast(
                xp, self.momentum * self.running_mean + (1 - self.momentum) * mu,
                self.running_mean.dtype,
            )  # fmt: skip
            self.running_var = _cast(
                xp, self.momentum * self.running_var + (1 - self.momentum) * var,
                self.running_var.dtype,
            )  # fmt: skip
        else:
            xc = x - _cast(xp, self.running_mean, x.dtype)
            std = xp.sqrt(_cast(xp, self.running_var, x.dtype) + self.eps)
        self.xc, self.std = xc, std
        self.xn = xc / std
        out = _cast(xp, gamma * self.xn + beta, out_dtype)
        return xp.reshape(out, self.input_shape)

    def backward(self, dout: Array) -> Array:
        """Set ``dgamma`` and ``dbeta``; return the gradient with respect to the input."""
        xn, xc, std = (_require_forward(a, self) for a in (self.xn, self.xc, self.std))
        xp = namespace(dout, xn)
        dout_dtype = dout.dtype
        dout = dout if dout.ndim == 2 else xp.reshape(dout, (dout.shape[0], -1))
        dout = _cast(xp, dout, xn.dtype)  # half-precision dout: summed in float32
        self.dbeta = _cast(xp, xp.sum(dout, axis=0), self.beta.dtype)
        self.dgamma = _cast(xp, xp.sum(xn * dout, axis=0), self.gamma.dtype)
        dxn = _cast(xp, self.gamma, xn.dtype) * dout
        if not self._trained:  # fixed statistics: an affine map per feature
            return xp.reshape(_cast(xp, dxn / std, dout_dtype), self.input_shape)
        n = _require_forward(self.batch_size, self)
        # The book's chain rule through the batch's mean and variance, unchanged.
        dxc = dxn / std
        dstd = -xp.sum((dxn * xc) / (std * std), axis=0)
        dvar = 0.5 * dstd / std
        dxc = dxc + (2.0 / n) * xc * dvar
        dmu = xp.sum(dxc, axis=0)
        dx = dxc - dmu / n
        return xp.reshape(_cast(xp, dx, dout_dtype), self.input_shape)


def _cast(xp: Any, a: Array, dtype: Any) -> Array:
    """``a`` in ``dtype``: itself when it has it already (``astype`` would copy)."""
    return a if a.dtype == dtype else xp.astype(a, dtype)


def _accumulating(xp: Any, a: Array) -> Array:
    """``a`` in the dtype its sums are accumulated in: float32 for half precision
    (`bpcore.precision.accumulation_dtype`), else unchanged."""
    return _cast(xp, a, accumulation_dtype(xp, a.dtype))


# -- chapter 7 ---------------------------------------------------------------------------------
