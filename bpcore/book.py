"""The book's own network classes, trained by bpcore's `Trainer`: the adapter and its protocol.

The book's scripts train networks of their own (``ch07/simple_convnet.py``) with the book's
``Trainer``; with ``common/`` replaced by bpcore, bpcore's `Trainer` gets such a network.
`TrainableNetwork` writes down the few names the Trainer and `bpcore.TrainingStep` use;
bpcore's networks have them, and `BookNetwork` gives them to any network written as the book
writes them. `trainable` is the one place that tells the two apart.
"""

from __future__ import annotations

from typing import Any, Protocol

import array_api_compat

from .backends import Array, Backend, backend_class_of, namespace
from .networks import Network, correct_predictions

__all__ = ["BookNetwork", "TrainableNetwork", "trainable"]


class TrainableNetwork(Protocol):
    """What the `Trainer` and `bpcore.TrainingStep` need of a network.

    `bpcore.networks.Network` has all of it; `BookNetwork` gives it to the book's own classes.
    """

    #: Whether the network's state is a `bpcore.networks.NetworkState` (``state``,
    #: ``using_state``, checkpoints): so it can be traced into one compiled step, and saved
    #: and resumed. False for the book's own classes, which keep theirs their own way.
    has_state: bool
    backend_info: Backend
    params: Any
    last_layer: Any
    last_loss: Array | None

    @property
    def xp(self) -> Any:
        """The namespace of the network's inputs."""
        ...

    @property
    def dtype(self) -> Any:
        """The floating dtype of the parameters."""
        ...

    def check_batch(
        self, x: Any, t: Any, names: tuple[str, str] = ("x", "t"), *, values: bool | None = None
    ) -> tuple[Array, Array]:
        """The batch validated (as ``Network.check_batch``)."""
        ...

    def check_layers(self) -> None:
        """Raise ValueError if the layers and the parameters no longer belong together."""
        ...

    def gradient(self, x: Any, t: Any) -> dict[str, Array]:
        """The book's ``gradient``: the batch checked, then `unchecked_gradient`."""
        ...

    def unchecked_gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """The gradients of a validated batch; its loss in ``last_loss``."""
        ...

    def unchecked_evaluation(self, x: Array, t: Array) -> tuple[Array, Array]:
        """A validated batch's hit count and loss, in inference mode, on the device."""
        ...


def trainable(network: Any) -> TrainableNetwork:
    """``network`` as the Trainer trains it: a bpcore network as it is, another wrapped.

    The one place that decides "a bpcore network or the book's own class": anything that is
    not a `bpcore.networks.Network` (nor already wrapped) is wrapped in `BookNetwork`.
    """
    if isinstance(network, (Network, BookNetwork)):
        return network
    return BookNetwork(network)


class BookNetwork:
    """A network written as the book writes them, for the `Trainer`: its own class, any layers.

    This wraps it in what the Trainer needs (`TrainableNetwork`), through the book's public
    methods only: ``gradient(x, t)`` (its loss layer keeps the loss, as the book's
    ``SoftmaxWithLoss`` does), ``predict(x)`` for the accuracy, ``params`` for the optimizer.
    Its backend is that of its parameters. Other attributes are the wrapped network's.

    Parameters
    ----------
    net : object
        With ``params`` (a dict of arrays), ``gradient``, ``predict`` and ``last_layer``.
    """

    has_state = False

    def __init__(self, net: Any) -> None:
        for name in ("params", "gradient", "predict", "last_layer"):
            if not hasattr(net, name):
                raise TypeError(
                    f"the Trainer needs a network with params, gradient(), predict() and "
                    f"last_layer, as the book's are; {type(net).__name__} has no {name}"
                )
        self.net = net
        first = next(iter(net.params.values()))
        xp = namespace(first)
        self.backend_info = backend_class_of(first)(xp, array_api_compat.device(first))
        self.xp = xp
        self.dtype = first.dtype
        self.last_loss: Array | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)

    def __repr__(self) -> str:
        return f"BookNetwork({type(self.net).__name__})"

    def check_batch(
        self, x: Any, t: Any, names: tuple[str, str] = ("x", "t"), *, values: bool | None = None
    ) -> tuple[Any, Any]:
        """The arrays as they are, after the one check the book's code cannot do for itself."""
        if int(x.shape[0]) != int(t.shape[0]):
            raise ValueError(
                f"{names[0]} holds {x.shape[0]} samples but {names[1]} holds {t.shape[0]} labels"
            )
        return x, t

    def check_layers(self) -> None:
        """Nothing to check: the book's network binds its own layers."""

    def gradient(self, x: Any, t: Any) -> dict[str, Array]:
        """The network's own ``gradient``, after `check_batch`; its loss in `last_loss`."""
        return self.unchecked_gradient(*self.check_batch(x, t))

    def unchecked_gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """The network's own ``gradient``; its loss, from its loss layer, in `last_loss`."""
        grads = dict(self.net.gradient(x, t))
        self.last_loss = self.net.last_layer.loss
        return grads

    def unchecked_evaluation(self, x: Array, t: Array) -> tuple[Array, Array]:
        """How many samples the network's own ``predict`` gets right, and its ``loss`` (its
        loss layer's on those scores when it has no ``loss`` method)."""
        scores = self.net.predict(x)
        if hasattr(self.net, "loss"):
            loss = self.net.loss(x, t)
        else:
            loss = self.net.last_layer.forward(scores, t)
        return correct_predictions(scores, t), loss
