"""The book's networks, and the `Network` base class every network shares.

A network is data: an ordered dict of layers, the loss layer, and the parameters those layers
own (`Params`, bound to the layers); its parameters and buffers together are its state
(`NetworkState`). The package's modules say how it is put together:

* `bpcore.networks.base`: `Network` (how it is built, what it is, the book's API, the entry
  checks);
* `bpcore.networks.state`: `NetworkState` and what `Network` does with it, `using_state`
  among it: the one save-and-restore;
* `bpcore.networks.params`: `Params`;
* `bpcore.networks.building`: host arrays checked, copied to the device, bound to the layers;
* `bpcore.networks.passes`: the forward and backward passes, the weight rule, the evaluation,
  and the ``unchecked_*`` computations of `Network`;
* `bpcore.networks.summary`: the table `Network.summary` prints;
* `bpcore.networks.dense`: `TwoLayerNet` (chapter 5), `MultiLayerNet` and
  `MultiLayerNetExtend` (chapter 6);
* `bpcore.networks.convnets`: `SimpleConvNet` (chapter 7) and `DeepConvNet` (chapter 8), also
  importable from `bpcore.convnets`.
"""

from .base import Network, NetworkState
from .convnets import DEEP_CONV_PARAMS, DeepConvNet, SimpleConvNet
from .dense import ACTIVATIONS, MultiLayerNet, MultiLayerNetExtend, TwoLayerNet
from .params import Params
from .passes import correct_predictions

__all__ = [
    "ACTIVATIONS",
    "DEEP_CONV_PARAMS",
    "DeepConvNet",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "Network",
    "NetworkState",
    "Params",
    "SimpleConvNet",
    "TwoLayerNet",
    "correct_predictions",
]
