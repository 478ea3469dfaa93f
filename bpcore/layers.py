"""The layers of chapter 5, each with its forward and backward pass side by side.

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

from typing import Any

from array_api_compat import device

from .backends import Array, namespace

__all__ = ["Affine", "Relu", "Sigmoid", "SoftmaxWithLoss", "Tanh"]


def _require_forward(value: Any, layer: object) -> Any:
    if value is None:
        raise RuntimeError(f"{type(layer).__name__}.backward called before forward")
    return value


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

    ``t`` may be integer class labels of shape ``(N,)`` or one-hot (or any probability) rows of
    shape ``(N, C)``. The loss uses log-sum-exp, so it is exact for large logits and needs no
    ``+1e-7`` inside a log. It is returned as a 0-d array of the input's backend: reading it as a
    Python number is left to the caller, since on a GPU that waits for the device.

    Attributes
    ----------
    loss : array or None
        The 0-d loss of the last forward pass.
    y : array or None
        The softmax probabilities, shape ``(N, C)``.
    t : array or None
        The labels as they were passed to forward.
    """

    def __init__(self) -> None:
        self.loss: Array | None = None
        self.y: Array | None = None
        self.t: Array | None = None
        self._target: Array | None = None  # t as (N, C) rows in y's dtype, used by backward

    def __repr__(self) -> str:
        return "SoftmaxWithLoss()"

    def forward(self, x: Array, t: Array) -> Array:
        """Return the mean cross-entropy of ``softmax(x)`` against ``t`` as a 0-d array."""
        xp = namespace(x, t)
        if x.ndim != 2:
            raise ValueError(f"SoftmaxWithLoss expects scores of shape (N, C); got {x.shape}")
        n, c = x.shape
        if t.ndim == 1 and t.shape[0] == n and xp.isdtype(t.dtype, "integral"):
            # Compare in the default integer dtype: an arange in t's own dtype would wrap
            # around past 255 classes for uint8 labels.
            classes = xp.arange(c, device=device(x))
            labels = t if t.dtype == classes.dtype else xp.astype(t, classes.dtype)
            target = xp.astype(xp.expand_dims(labels, axis=1) == classes, x.dtype)
        elif tuple(t.shape) == (n, c) and xp.isdtype(t.dtype, ("integral", "real floating")):
            target = t if t.dtype == x.dtype else xp.astype(t, x.dtype)
        else:
            raise ValueError(
                f"SoftmaxWithLoss expects labels as integers of shape ({n},) or one-hot rows of "
                f"shape ({n}, {c}); got {t.dtype} labels of shape {tuple(t.shape)}"
            )
        shifted = x - xp.max(x, axis=1, keepdims=True)  # log-sum-exp: exp never overflows
        e = xp.exp(shifted)
        total = xp.sum(e, axis=1, keepdims=True)
        self.y = e / total
        log_y = shifted - xp.log(total)
        self.t = t
        self._target = target
        self.loss = -xp.sum(target * log_y) / n
        return self.loss

    def backward(self, dout: Array | float = 1) -> Array:
        """Return ``dout * (y - t) / N``, the gradient of the mean loss with respect to ``x``."""
        y = _require_forward(self.y, self)
        n = y.shape[0]
        if type(dout) in (int, float):  # a Python number keeps y's dtype
            return (y - self._target) * (dout / n)
        # A 0-d array (or a NumPy scalar, which is not a weak Python float): cast it to y's dtype
        # so that a float64 dout does not turn a float32 network's gradients into float64.
        return (y - self._target) * (namespace(y).astype(dout, y.dtype) / n)
