"""PyTorch autograd as an independent oracle for bpcore's gradients, on every backend.

The same parameters and batch go through bpcore (on the backend under test) and through a
network written with ``torch.nn.functional`` in float64, whose gradients autograd computes.
"""

from __future__ import annotations

import numpy as np
import pytest

from bpcore import MultiLayerNet, TwoLayerNet, to_numpy
from bpcore.testing import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def _torch_gradients(net, x_host, t_host, activation, weight_decay_lambda):
    params = {
        k: torch.tensor(to_numpy(v), dtype=torch.float64, requires_grad=True)
        for k, v in net.params.items()
    }
    n_layers = len(params) // 2
    h = torch.tensor(x_host, dtype=torch.float64).reshape(x_host.shape[0], -1)
    for i in range(1, n_layers + 1):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < n_layers:
            h = ACTIVATIONS[activation](h)
    if t_host.ndim == 1:
        loss = F.cross_entropy(h, torch.tensor(t_host))
    else:
        loss = -(torch.tensor(t_host) * F.log_softmax(h, dim=1)).sum(dim=1).mean()
    for i in range(1, n_layers + 1):
        loss = loss + 0.5 * weight_decay_lambda * (params[f"W{i}"] ** 2).sum()
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in params.items()}


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("weight_decay_lambda", [0.0, 0.05])
@pytest.mark.parametrize("labels", ["integer", "one-hot"])
def test_multi_layer_net_matches_autograd(backend, rng, activation, weight_decay_lambda, labels):
    net = MultiLayerNet(
        12,
        [9, 7],
        5,
        activation=activation,
        weight_decay_lambda=weight_decay_lambda,
        dtype="float64",
        seed=21,
        **backend.net_kwargs(),
    )
    x_host = rng.standard_normal((8, 3, 4))
    t_int = rng.integers(0, 5, 8)
    t_host = t_int if labels == "integer" else np.eye(5)[t_int]
    x, t = backend.asarray(x_host), backend.asarray(t_host)

    loss, expected = _torch_gradients(net, x_host, t_host, activation, weight_decay_lambda)
    assert float(net.loss(x, t)) == pytest.approx(loss, rel=1e-12)
    grads = net.gradient(x, t)
    for key in net.params:
        assert_close(
            grads[key],
            expected[key],
            rtol=1e-10,
            atol=1e-14,
            xp=backend.param_xp,
            dtype=net.dtype,
            err_msg=key,
        )


def test_two_layer_net_float32_matches_autograd(backend, rng):
    net = TwoLayerNet(784, 50, 10, seed=22, **backend.net_kwargs())
    x_host = rng.integers(0, 256, (16, 784)).astype(np.uint8)
    t_host = rng.integers(0, 10, 16)
    _, expected = _torch_gradients(net, x_host / 255.0, t_host, "relu", 0.0)
    x = backend.xp.astype(backend.asarray(x_host), net.dtype) / 255.0
    grads = net.gradient(x, backend.asarray(t_host))
    for key in net.params:
        scale = float(np.max(np.abs(expected[key])))
        assert_close(
            grads[key], expected[key], rtol=1e-3, atol=1e-5 * scale, dtype=net.dtype, err_msg=key
        )
