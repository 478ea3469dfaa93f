"""bpcore: the backpropagation of *Deep Learning from Scratch* chapter 5, on any Array API backend.

The layers (`bpcore.layers`), the networks (`TwoLayerNet`, `MultiLayerNet`, on the `Network`
base class) and the gradient checks are written once against the Python Array API standard, so
the book's code runs on NumPy, CuPy (CUDA), PyTorch, JAX, Dask or array-api-strict by changing
one keyword::

    net = bpcore.TwoLayerNet(784, 50, 10, backend="cupy")

Importing bpcore imports NumPy and array-api-compat only (tqdm when a progress bar is shown);
other backends are imported when a network asks for them.
"""

from . import layers, optimizers
from .backends import BACKENDS, available_backends, to_numpy
from .checkpoints import load
from .gradcheck import GradientCheck, directional_gradient_check, gradient_check
from .networks import MultiLayerNet, Network, TwoLayerNet
from .training import Trainer, TrainingDivergedError
from .version import __version__

__all__ = [
    "BACKENDS",
    "GradientCheck",
    "MultiLayerNet",
    "Network",
    "Trainer",
    "TrainingDivergedError",
    "TwoLayerNet",
    "__version__",
    "available_backends",
    "directional_gradient_check",
    "gradient_check",
    "layers",
    "load",
    "optimizers",
    "to_numpy",
]
