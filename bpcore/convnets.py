"""The book's convolutional networks, `SimpleConvNet` and `DeepConvNet`, by their first address.

They live in `bpcore.networks.convnets`, beside the fully connected ones; this module keeps
``from bpcore.convnets import SimpleConvNet`` working.
"""

from .networks.convnets import DEEP_CONV_PARAMS, DeepConvNet, SimpleConvNet

__all__ = ["DEEP_CONV_PARAMS", "DeepConvNet", "SimpleConvNet"]
