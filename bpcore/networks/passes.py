"""The passes through a network's layers, each said once, and the computations made of them.

`forward` is the one loop over the layers: prediction, the loss, evaluation and `summary` all
run it. `backward` is the book's backward pass. `weight_keys` is the one rule for which
parameters are weights (those weight decay penalizes). `correct_predictions` and
`evaluate_in_batches` are the one evaluation: `Network.accuracy` and the Trainer's end of epoch
both count with them. `PassesMixin` gives `bpcore.networks.Network` its ``unchecked_*``
computations, on batches its entry points have validated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import array_api_compat
import numpy as np

from .. import _checks
from ..backends import Array, Backend, index_dtype
from ..layers import Layer, backward_params, takes_train_flg
from ..precision import Gradients, LossScaler, Precision

__all__ = [
    "PassesMixin",
    "backward",
    "correct_predictions",
    "evaluate_in_batches",
    "forward",
    "weight_keys",
]


def forward(
    layers: Mapping[str, Layer],
    x: Array,
    train_flg: bool,
    visit: Callable[[str, Layer, Array], None] | None = None,
) -> Array:
    """Run ``x`` through ``layers`` in order; ``visit(name, layer, output)`` after each.

    Layers that take ``train_flg`` get it (the book tests the layer's class name; an attribute
    lets any layer say so, see `bpcore.layers.Layer`).
    """
    for name, layer in layers.items():
        x = layer.forward(x, train_flg) if takes_train_flg(layer) else layer.forward(x)
        if visit is not None:
            visit(name, layer, x)
    return x


def backward(layers: Sequence[Layer], last_layer: Any, dout: Any = 1) -> None:
    """The book's backward pass, from the loss layer to the first layer, after a forward pass.

    Each layer keeps its parameters' gradients (``dW``, ``db``, ...). Nobody needs the gradient
    with respect to the input: the first layer skips that product where it offers to
    (`bpcore.layers.backward_params`). ``dout`` is the gradient of the loss: a loss scale
    under mixed float16 (`bpcore.precision.LossScaler`).
    """
    dout = last_layer.backward(dout)
    for layer in reversed(layers[1:]):
        dout = layer.backward(dout)
    backward_params(layers[0], dout)


def weight_keys(params: Any) -> tuple[str, ...]:
    """The parameters that are weights: those a layer holds as its ``W``, in ``params``' order.

    The one rule for what weight decay penalizes (the book's ``0.5 * lambda * sum(W**2)`` over
    the Affine and convolution weights, not the biases or batch normalization's scales).
    ``params`` is a network's `Params`, which knows each parameter's layer and attribute.
    """
    return tuple(key for key in params if params.layer_of(key)[1] == "W")


def correct_predictions(y: Array, t: Array) -> Array:
    """How many rows of scores ``y`` pick the class of ``t`` (labels or one-hot), as a 0-d array.

    Stays on the device: training loops add these up and read them back once.
    """
    xp = array_api_compat.array_namespace(y, t)
    labels = t if t.ndim == 1 else xp.argmax(t, axis=1)
    predicted = xp.argmax(y, axis=1)
    return xp.sum(xp.astype(predicted == xp.astype(labels, predicted.dtype), index_dtype(xp)))


def evaluate_in_batches(
    evaluation: Callable[[Array, Array], tuple[Array, Array | None]],
    x: Array,
    t: Array,
    batch_size: int,
    backend: Backend,
) -> tuple[float, float]:
    """Accuracy and mean loss over ``x`` and ``t``, ``batch_size`` samples at a time.

    ``evaluation(x, t)`` gives a batch's hit count and mean loss as 0-d arrays on the device
    (`Network.unchecked_evaluation`, or its compiled form), or the count and None where the
    loss is not wanted (the mean loss is then NaN); they stay on the device until every batch
    is done, are computed together (a lazy backend's in one pass) and read back together, not
    once per batch. The last batch may be smaller; every sample counts.
    """
    n = int(x.shape[0])
    hits, losses, sizes = [], [], []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)  # a stop past the end is not in the Array API
        batch_hits, batch_loss = evaluation(x[start:stop, ...], t[start:stop, ...])
        hits.append(batch_hits)
        losses.append(batch_loss)
        sizes.append(stop - start)
    wanted = [loss for loss in losses if loss is not None]
    computed = backend.compute(*hits, *wanted)
    hits, wanted = list(computed[: len(hits)]), list(computed[len(hits) :])
    # Two read-backs: the counts are integers and the losses floats, which not every library
    # stacks together.
    accuracy = float(backend.read_floats(hits).sum()) / n
    if not wanted:
        return accuracy, float("nan")
    return accuracy, float(backend.read_floats(wanted) @ np.asarray(sizes, dtype=np.float64)) / n


class PassesMixin:
    """The ``unchecked_*`` computations of `bpcore.networks.Network`, on validated batches.

    Each public one computes a lazy batch (Dask) at its start when the network computes its
    batches (decided when it was built), and runs the passes above, which never do: the
    compute happens in the outermost call only.
    """

    layers: Mapping[str, Any]
    last_layer: Any
    params: Any
    backend_info: Backend
    last_loss: Array | None
    loss_scaler: LossScaler | None
    _computes_batches: bool
    _weights: tuple[str, ...]
    _precision: Precision | None

    if TYPE_CHECKING:  # what Network and StateMixin provide

        @property
        def weight_decay_lambda(self) -> float: ...

        @property
        def output_size(self) -> int: ...

        @property
        def buffers(self) -> dict[str, Array]: ...

        def set_buffers(self, values: Mapping[str, Array]) -> None: ...

        def using_state(self) -> contextlib.AbstractContextManager[Any]: ...

    def _computed(self, *arrays: Array) -> tuple[Array, ...]:
        return self.backend_info.compute(*arrays) if self._computes_batches else arrays

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        """A context in which the layers hold the parameters in the dtype the passes compute in.

        Under a mixed precision (`bpcore.precision`), half-precision copies of the float32
        master parameters, made here (so they follow any update of ``params``, in place or
        not) and taken out again on leaving: ``params`` itself always holds the masters.
        Otherwise nothing happens.
        """
        policy = self._precision
        if policy is None:
            yield
            return
        xp = self.backend_info.param_xp
        compute = self.backend_info.dtype(policy.compute)
        masters = dict(self.params)
        for key, value in masters.items():
            layer, attribute = self.params.layer_of(key)
            setattr(layer, attribute, xp.astype(value, compute))
        try:
            yield
        finally:
            for key, value in masters.items():
                layer, attribute = self.params.layer_of(key)
                setattr(layer, attribute, value)

    def unchecked_predict(self, x: Array, train_flg: bool = False) -> Array:
        """`predict` on a batch `check_inputs` has validated."""
        (x,) = self._computed(x)
        with self.computing():
            return forward(self.layers, x, train_flg)

    def unchecked_hits(self, x: Array, t: Array) -> Array:
        """How many samples of a checked batch the network gets right, in inference mode.

        A 0-d array that stays on the device (`correct_predictions` of `unchecked_predict`).
        """
        x, t = self._computed(x, t)
        with self.computing():
            return correct_predictions(forward(self.layers, x, False), t)

    def unchecked_loss(self, x: Array, t: Array, train_flg: bool = False) -> Array:
        """`loss` on a batch `check_batch` has validated."""
        (x,) = self._computed(x)  # the labels stay lazy: so does the loss, on every net
        with self.computing():
            return self._loss(forward(self.layers, x, train_flg), t)

    def unchecked_evaluation(self, x: Array, t: Array) -> tuple[Array, Array]:
        """How many samples of a checked batch are right, and its `loss`, in inference mode.

        Both from one forward pass, as 0-d arrays on the device (for evaluation loops).
        """
        x, t = self._computed(x, t)
        with self.computing():
            scores = forward(self.layers, x, False)
            return correct_predictions(scores, t), self._loss(scores, t)

    def _loss(self, scores: Array, t: Array) -> Array:
        """The loss layer's loss of ``scores``, plus the weight decay over the weights (the
        master parameters')."""
        loss = self.last_layer.forward(scores, t)
        lam = self.weight_decay_lambda
        if lam:
            xp = self.backend_info.param_xp
            for key in self._weights:
                W = self.params[key]
                loss = loss + 0.5 * lam * xp.sum(W * W)
        return loss

    def unchecked_gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """`gradient` on a batch `check_batch` has validated: the book's backward pass.

        The forward pass runs in training mode (``train_flg=True``: fresh dropout masks, batch
        statistics, running statistics updated), as the book's ``gradient`` does. Keeps the
        loss in `last_loss`. On a lazy backend (Dask) the gradients, the loss, the loss layer's
        scores and labels and the buffers are computed here, together, in one pass, and a
        batch whose labels the loss layer found invalid raises ValueError then, with the
        buffers as they were.
        """
        x, t = self._computed(x, t)
        scaler = self.loss_scaler
        if scaler is not None:  # one set by the user starts here
            scaler.start(next(iter(self.params.values())))
        if not self.backend_info.is_lazy:
            return self._gradients(x, t)
        # The state as it was, unless the batch's labels turn out valid: only then are the
        # computed buffers (running statistics), loss and loss scale set.
        scaler_state = None if scaler is None else scaler.state()
        with self.using_state():
            grads = self._gradients(x, t)
            finite = getattr(grads, "finite", None)
            last = self.last_layer
            (grads, loss, last.y, last.t, valid, buffers, finite, new_scale) = (
                self.backend_info.compute(
                    dict(grads), self.last_loss, last.y, last.t, last.labels_valid,
                    self.buffers, finite, None if scaler is None else scaler.state(),
                )
            )  # fmt: skip
            if scaler is not None and scaler_state is not None:
                scaler.load_state(scaler_state)
            if not bool(valid):  # computed with the rest, so reading it costs nothing more
                _checks.raise_for_label_values(last.t, self.output_size)
        self.set_buffers(buffers)
        self.last_loss = loss
        if scaler is not None:
            scaler.load_state(new_scale)
            return Gradients(grads, finite)
        return grads  # type: ignore[no-any-return]

    def _gradients(self, x: Array, t: Array) -> dict[str, Array]:
        """The forward pass in training mode, the backward pass, and the gradients by key
        (weight decay added to the weights'); the loss in `last_loss`.

        Under a mixed precision the passes run on half-precision copies of the parameters
        (`computing`) and the gradients are cast to the masters' float32; with loss scaling
        the backward pass starts from the scale, the gradients are divided by it and come as
        `bpcore.precision.Gradients`, zero if any overflowed, and the scale moves.
        """
        scaler, xp = self.loss_scaler, self.backend_info.param_xp
        # Under loss scaling (the scaler started by unchecked_gradient), overflow is looked
        # for, not warned of.
        quiet = contextlib.nullcontext() if scaler is None else self.backend_info.overflowing()
        with self.computing(), quiet:
            self.last_loss = self._loss(forward(self.layers, x, True), t)
            dout = 1 if scaler is None else scaler.scale
            backward(list(self.layers.values()), self.last_layer, dout)
            grads: dict[str, Array] = {}
            for key, master in self.params.items():
                layer, attribute = self.params.layer_of(key)
                g = getattr(layer, "d" + attribute)
                grads[key] = g if g.dtype == master.dtype else xp.astype(g, master.dtype)
            if scaler is not None:
                grads = scaler.unscale(grads)
            lam = self.weight_decay_lambda
            if lam:
                for key in self._weights:
                    grads[key] = grads[key] + lam * self.params[key]
            if scaler is not None:
                return scaler.checked(grads)
        return grads
