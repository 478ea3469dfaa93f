"""bpcore: the backpropagation of *Deep Learning from Scratch*, on any Array API backend.

The layers (`bpcore.layers`, with `im2col` and `col2im`), the networks (`TwoLayerNet`,
`MultiLayerNet`, `MultiLayerNetExtend`, `SimpleConvNet`, `DeepConvNet`, on the `Network` base
class) and the gradient checks are written once against the Python Array API standard, so
the book's code runs on NumPy, CuPy (CUDA), PyTorch, JAX, Dask or array-api-strict by changing
one keyword::

    net = bpcore.TwoLayerNet(784, 50, 10, backend="cupy")

Importing bpcore imports NumPy and array-api-compat only (tqdm when a progress bar is shown);
other backends are imported when a network asks for them.
"""

from . import convnets as convnets  # bpcore.convnets, as before the networks package
from . import layers, optimizers, precision
from .backends import BACKENDS, available_backends, to_numpy
from .checkpoints import load
from .environment import environment_info
from .gradcheck import GradientCheck, directional_gradient_check, gradient_check
from .im2col import col2im, im2col
from .networks import (
    DeepConvNet,
    MultiLayerNet,
    MultiLayerNetExtend,
    Network,
    SimpleConvNet,
    TwoLayerNet,
)
from .precision import LossScaler
from .steps import TrainingStep, compile_step
from .training import Trainer, TrainingDivergedError
from .version import __version__

__all__ = [
    "BACKENDS",
    "DeepConvNet",
    "GradientCheck",
    "LossScaler",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "Network",
    "SimpleConvNet",
    "Trainer",
    "TrainingDivergedError",
    "TrainingStep",
    "TwoLayerNet",
    "__version__",
    "available_backends",
    "col2im",
    "compile_step",
    "directional_gradient_check",
    "environment_info",
    "gradient_check",
    "im2col",
    "layers",
    "load",
    "optimizers",
    "precision",
    "to_numpy",
]
