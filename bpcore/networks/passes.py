"""The passes through a network's layers, each said once.

`forward` is the one loop over the layers: prediction, the loss, evaluation and `summary` all
run it. `backward` is the book's backward pass. `weight_keys` is the one rule for which
parameters are weights (those weight decay penalizes). `correct_predictions` and
`evaluate_in_batches` are the one evaluation: `Network.accuracy` and the Trainer's end of epoch
both count with them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import array_api_compat
import numpy as np

from ..backends import Array, Backend, index_dtype
from ..layers import Layer, backward_params, takes_train_flg

__all__ = [
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


def backward(layers: Sequence[Layer], last_layer: Any) -> None:
    """The book's backward pass, from the loss layer to the first layer, after a forward pass.

    Each layer keeps its parameters' gradients (``dW``, ``db``, ...). Nobody needs the gradient
    with respect to the input: the first layer skips that product where it offers to
    (`bpcore.layers.backward_params`).
    """
    dout = last_layer.backward(1)
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
    evaluation: Callable[[Array, Array], tuple[Array, Array]],
    x: Array,
    t: Array,
    batch_size: int,
    backend: Backend,
) -> tuple[float, float]:
    """Accuracy and mean loss over ``x`` and ``t``, ``batch_size`` samples at a time.

    ``evaluation(x, t)`` gives a batch's hit count and mean loss as 0-d arrays on the device
    (`Network.unchecked_evaluation`, or its compiled form); they stay there until every batch
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
    computed = backend.compute(*hits, *losses)
    hits, losses = list(computed[: len(hits)]), list(computed[len(hits) :])
    # Two read-backs: the counts are integers and the losses floats, which not every library
    # stacks together.
    accuracy = float(backend.read_floats(hits).sum()) / n
    return accuracy, float(backend.read_floats(losses) @ np.asarray(sizes, dtype=np.float64)) / n
