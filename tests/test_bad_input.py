"""Bad input gets a clear ValueError or TypeError from bpcore, and leaves the parameters alone."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import bpcore
from bpcore import MultiLayerNet, TwoLayerNet, to_numpy

ENTRY_POINTS = [
    "loss",
    "accuracy",
    "gradient",
    "numerical_gradient",
    "gradient_check",
    "directional_gradient_check",
]


def _call(net, entry, x, t):
    if entry in ("gradient_check", "directional_gradient_check"):
        return getattr(bpcore, entry)(net, x, t)
    return getattr(net, entry)(x, t)


@pytest.fixture
def net(backend):
    return TwoLayerNet(6, 4, 3, seed=0, **backend.net_kwargs())


def _snapshot(net):
    return {k: (v, to_numpy(v).copy()) for k, v in net.params.items()}


def _assert_unchanged(net, snapshot):
    for key, (obj, values) in snapshot.items():
        assert net.params[key] is obj
        np.testing.assert_array_equal(to_numpy(net.params[key]), values)


def _bad_batches(backend):
    """(description, x, t, error type, message pattern) for a net of 6 inputs and 3 classes."""
    A = backend.asarray
    x = A(np.ones((4, 6)), "float32")
    t = A(np.array([0, 1, 2, 1]))
    return [
        (
            "wrong feature count",
            A(np.ones((4, 5)), "float32"),
            t,
            ValueError,
            "5 features per sample .* expects 6",
        ),
        (
            "batch size mismatch",
            x,
            A(np.array([0, 1, 2])),
            ValueError,
            "batch of 4 samples but t holds 3 labels",
        ),
        (
            "label out of range",
            x,
            A(np.array([0, 1, 3, 1])),
            ValueError,
            r"labels from 0 to 3; expected integers in \[0, 2\]",
        ),
        (
            "negative label",
            x,
            A(np.array([0, -1, 2, 1])),
            ValueError,
            r"labels from -1 to 2; expected integers in \[0, 2\]",
        ),
        (
            "fractional label",
            x,
            A(np.array([0.0, 1.5, 2.0, 1.0])),
            ValueError,
            "fractional or NaN class labels",
        ),
        (
            "NaN label",
            x,
            A(np.array([0.0, np.nan, 2.0, 1.0])),
            ValueError,
            "fractional or NaN class labels",
        ),
        (
            "one-hot too narrow",
            x,
            A(np.eye(2)[[0, 1, 1, 0]]),
            ValueError,
            "one-hot rows of width 2, but the network has 3 outputs",
        ),
        (
            "one-hot too wide",
            x,
            A(np.eye(4)[[0, 1, 1, 0]]),
            ValueError,
            "one-hot rows of width 4, but the network has 3 outputs",
        ),
        (
            "rows not one-hot",
            x,
            A(np.full((4, 3), 0.5)),
            ValueError,
            "not one-hot: each row must be non-negative and sum to 1",
        ),
        (
            "empty batch",
            A(np.ones((0, 6)), "float32"),
            A(np.zeros(0, dtype="int64")),
            ValueError,
            "empty batch",
        ),
        (
            "a single sample without a batch axis",
            A(np.ones(6), "float32"),
            t,
            ValueError,
            r"batch of shape \(N, 6\)",
        ),
        (
            "boolean labels",
            x,
            A(np.array([True, False, True, True])),
            TypeError,
            "integer class labels or one-hot rows",
        ),
        (
            "labels of the wrong rank",
            x,
            A(np.zeros((4, 3, 1))),
            ValueError,
            r"class labels of shape \(4,\) or one-hot rows",
        ),
        ("x of booleans", A(np.ones((4, 6), dtype=bool)), t, TypeError, "integers or real floats"),
        ("x as a list", [[0.0] * 6] * 4, t, TypeError, "x must be an array of backend"),
    ]


# Bad batches that only a read of the labels' values can tell.
VALUE_ERRORS = {
    "label out of range",
    "negative label",
    "fractional label",
    "NaN label",
    "rows not one-hot",
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_bad_batches(backend, net, entry):
    deferred = not net.backend_info.reads_values_freely
    for what, x, t, error, pattern in _bad_batches(backend):
        snapshot = _snapshot(net)
        if deferred and what in VALUE_ERRORS and entry in ("loss", "gradient"):
            _assert_nan_not_silently_wrong(net, entry, x, t, pattern)
        else:
            caught = None
            try:
                _call(net, entry, x, t)
            except error as exc:
                caught = exc
            assert caught is not None, f"{what}: {entry} raised no {error.__name__}"
            assert re.search(pattern, str(caught)), f"{what}: message {str(caught)!r}"
        _assert_unchanged(net, snapshot)


def _assert_nan_not_silently_wrong(net, entry, x, t, pattern):
    """Where reading labels would wait for the device, loss and gradient do not read them.

    A bad batch then gives a NaN loss and NaN gradients, never a plausible number; on Dask,
    whose gradient computes everything in one pass, the gradient raises at once.
    """
    if entry == "gradient" and net.backend_info.is_lazy:
        # A fractional label reads as -1 there: the loss layer has only integers.
        with pytest.raises(ValueError, match=r"expected integers in \[0, 2\]|not one-hot"):
            net.gradient(x, t)
        return
    result = _call(net, entry, x, t)
    values = [result] if entry == "loss" else list(result.values())
    for value in values:
        assert np.all(np.isnan(to_numpy(value))), f"{entry} gave a number for a bad batch"
    # The checks that read the labels name the problem, on every backend.
    with pytest.raises(ValueError, match=pattern):
        net.check_batch(x, t, values=True)


def test_predict_checks_x(backend, net):
    snapshot = _snapshot(net)
    with pytest.raises(ValueError, match="5 features per sample"):
        net.predict(backend.asarray(np.ones((2, 5)), "float32"))
    with pytest.raises(ValueError, match="empty batch"):
        net.predict(backend.asarray(np.ones((0, 6)), "float32"))
    _assert_unchanged(net, snapshot)


def test_arrays_that_cannot_move_name_the_one_line_that_moves_them(backend, net):
    # NumPy arrays move to any backend (tests/test_host_batches.py), and so do other libraries'
    # arrays where DLPack takes them; a lazy Dask array does not (nor a strict array, to Dask).
    if backend.name == "dask":
        import array_api_strict

        x_foreign = array_api_strict.asarray(np.ones((4, 6), dtype="float32"))
    else:
        da = pytest.importorskip("dask.array")
        x_foreign = da.from_array(np.ones((4, 6), dtype="float32"))
    x = backend.asarray(np.ones((4, 6)), "float32")
    t = backend.asarray(np.array([0, 1, 2, 1]))
    snapshot = _snapshot(net)
    with pytest.raises(
        TypeError,
        match=rf"x is an array of .* cannot move to this network's backend '{backend.name}' "
        r"by itself; move it there first: net.xp.asarray\(bpcore.to_numpy\(x\), "
        r"device=net.device\)",
    ):
        net.gradient(x_foreign, t)
    with pytest.raises(TypeError, match="t is an array of"):
        net.loss(x, x_foreign[:, 0])
    _assert_unchanged(net, snapshot)


def test_arrays_from_another_device():
    # array-api-strict has several (simulated) devices, so this runs on any machine.
    net = TwoLayerNet(6, 4, 3, seed=0, backend="array_api_strict", device="device1")
    import array_api_strict as xp

    x = xp.asarray(np.ones((4, 6), dtype="float32"))  # on the default CPU_DEVICE, "cpu"
    t = xp.asarray(np.array([0, 1, 2, 1]), device=xp.Device("device1"))
    snapshot = _snapshot(net)
    with pytest.raises(ValueError, match=r"is on device 'cpu' but this network is on 'device1'"):
        net.gradient(x, t)
    _assert_unchanged(net, snapshot)
    assert net.params["W1"].device == xp.Device("device1")


def test_params_assignment_is_checked(backend, net):
    xp = backend.param_xp
    snapshot = _snapshot(net)
    with pytest.raises(ValueError, match=r"shape \(6, 4\) and dtype"):
        net.params["W1"] = xp.zeros((4, 6), dtype=net.dtype)
    with pytest.raises(ValueError, match="dtype"):
        net.params["W1"] = xp.zeros((6, 4), dtype=xp.float64)
    with pytest.raises(KeyError, match="not a parameter"):
        net.params["W9"] = xp.zeros((6, 4), dtype=net.dtype)
    with pytest.raises(TypeError, match="must be an array"):
        net.params["b1"] = [0.0] * 4
    with pytest.raises(TypeError, match="cannot be removed"):
        del net.params["W1"]
    with pytest.raises(TypeError, match="cannot be removed"):
        net.params.pop("W1")
    good_b1 = xp.ones_like(net.params["b1"])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):  # checked before b1 is set
        net.params.update({"b1": good_b1, "b2": xp.zeros((4,), dtype=net.dtype)})
    with pytest.raises(ValueError, match=r"shape \(6, 4\)"):
        net.params |= {"W1": xp.zeros((9, 9), dtype=net.dtype)}
    _assert_unchanged(net, snapshot)
    net.params |= {"b1": good_b1}
    assert net.layers["Affine1"].b is good_b1


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "pattern"),
    [
        ((0, 4, 3), {}, ValueError, "input_size must be a positive integer, got 0"),
        ((6, -4, 3), {}, ValueError, "hidden_size must be a positive integer, got -4"),
        ((6, 4, 0), {}, ValueError, "output_size must be a positive integer, got 0"),
        ((6.0, 4, 3), {}, TypeError, "input_size must be a positive integer"),
        ((6, True, 3), {}, TypeError, "hidden_size must be a positive integer"),
        (
            (6, 4, 3),
            {"weight_init_std": "glorot"},
            ValueError,
            "unknown weight_init_std 'glorot'; expected a positive number or one of 'relu'",
        ),
        ((6, 4, 3), {"weight_init_std": -0.1}, ValueError, "positive finite number"),
        ((6, 4, 3), {"weight_init_std": float("nan")}, ValueError, "positive finite number"),
        (
            (6, 4, 3),
            {"dtype": "float8"},
            ValueError,
            "unsupported dtype 'float8'; expected one of 'float32', 'float64', 'float16', "
            "'bfloat16'",
        ),
        ((6, 4, 3), {"dtype": "int32"}, ValueError, "unsupported dtype 'int32'"),
        (
            (6, 4, 3),
            {"backend": "tensorflow"},
            ValueError,
            "unknown backend 'tensorflow'; expected one of 'numpy', 'cupy', 'torch', "
            "'array_api_strict'",
        ),
        ((6, 4, 3), {"backend": 3}, TypeError, "backend must be a name or a namespace module"),
        (
            (6, 4, 3),
            {"backend": "numpy", "device": "cuda:0"},
            ValueError,
            "backend 'numpy' has only the 'cpu' device",
        ),
        (
            (6, 4, 3),
            {"backend": "array_api_strict", "device": "tpu"},
            ValueError,
            "backend 'array_api_strict' has no device 'tpu'",
        ),
    ],
)
def test_bad_two_layer_net_arguments(args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        TwoLayerNet(*args, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"hidden_size_list": [5, 0]}, ValueError, r"hidden_size_list\[1\] must be a positive"),
        ({"hidden_size_list": 5}, TypeError, "hidden_size_list must be a list"),
        (
            {"activation": "gelu"},
            ValueError,
            "unknown activation 'gelu'; expected one of 'relu', 'sigmoid', 'tanh'",
        ),
        ({"weight_init_std": "uniform"}, ValueError, "unknown weight_init_std 'uniform'"),
        ({"weight_decay_lambda": -1}, ValueError, "weight_decay_lambda must be a finite"),
        ({"weight_decay_lambda": "0.1"}, TypeError, "weight_decay_lambda must be a number"),
        (
            {"dtype": "bfloat16"},
            ValueError,
            "dtype 'bfloat16' is not supported by backend 'numpy' on device 'cpu'",
        ),
        ({"precision": "mixed_float8"}, ValueError, "unsupported precision 'mixed_float8'"),
        ({"precision": 16}, ValueError, "unsupported precision 16"),
        (
            {"precision": "mixed_float16", "dtype": "float64"},
            ValueError,
            "precision 'mixed_float16' keeps float32 master parameters; got dtype='float64'",
        ),
        (
            {"precision": "mixed_bfloat16"},
            ValueError,
            "dtype 'bfloat16' is not supported by backend 'numpy'",
        ),
    ],
)
def test_bad_multi_layer_net_arguments(kwargs, error, pattern):
    full = {"input_size": 6, "hidden_size_list": [5], "output_size": 3, **kwargs}
    with pytest.raises(error, match=pattern):
        MultiLayerNet(**full)


def test_torch_device_that_does_not_exist():
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="'cuda:99' is not available: torch sees"):
        TwoLayerNet(6, 4, 3, backend="torch", device="cuda:99")


def test_float64_on_a_device_without_it():
    with pytest.raises(ValueError, match="dtype 'float64' is not supported by backend"):
        TwoLayerNet(6, 4, 3, backend="array_api_strict", device="no_float64", dtype="float64")


def test_unknown_backend_in_environment(monkeypatch):
    monkeypatch.setenv("BPCORE_BACKEND", "mxnet")
    with pytest.raises(ValueError, match="BPCORE_BACKEND='mxnet': unknown backend"):
        TwoLayerNet(6, 4, 3)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("torch", 'pip install "torch>=2.4" (in a clone of bpcore: pip install -e ".[torch]")'),
        ("array_api_strict", 'pip install "array-api-strict>=2.3"'),
        ("cupy", 'pip install "cupy-cuda12x[ctk]>=14"'),
    ],
)
def test_backend_not_installed(monkeypatch, name, hint):
    # A None entry in sys.modules makes the import fail as if the package were absent.
    module = {"array_api_strict": "array_api_strict"}.get(name, f"array_api_compat.{name}")
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        ImportError,
        match=f"backend '{name}' is not installed here.*" + re.escape(hint),
    ):
        TwoLayerNet(6, 4, 3, backend=name)


def test_cupy_without_a_cuda_device(monkeypatch):
    # CuPy imports on machines without a GPU; it must then say so, not fail on first use.
    from bpcore.backends import CuPyBackend

    monkeypatch.setattr(CuPyBackend, "import_namespace", classmethod(lambda cls: object()))
    monkeypatch.setattr(CuPyBackend, "device_count", classmethod(lambda cls: 0))
    with pytest.raises(ImportError, match=r"sees no CUDA device.*cupy-cuda12x"):
        TwoLayerNet(6, 4, 3, backend="cupy")


def _label_lists() -> list[list[int]]:
    """Labels for a network of 7 classes: each side of both ends, then 40 lists drawn by a seeded
    generator (1 to 8 labels from -5 to 12; most hold one out of range, 4 do not)."""
    rng = np.random.default_rng(7)
    edges = [[0], [6], [-1], [7], [0, 6, 3], [6, 7], [-1, 0], [12, -5]]
    return edges + [rng.integers(-5, 13, rng.integers(1, 9)).tolist() for _ in range(40)]


@pytest.mark.parametrize("labels", _label_lists(), ids=str)
def test_any_label_outside_the_classes_is_rejected(labels):
    net = TwoLayerNet(6, 4, 7, seed=0, backend="numpy")
    x = np.ones((len(labels), 6), dtype="float32")
    t = np.array(labels)
    if all(0 <= v < 7 for v in labels):
        assert np.isfinite(float(net.loss(x, t)))
    else:
        with pytest.raises(ValueError, match=r"expected integers in \[0, 6\]"):
            net.loss(x, t)


@pytest.mark.parametrize("label_dtype", ["uint8", "int16", "int32", "int64"])
def test_label_dtypes_with_many_classes(backend, label_dtype):
    # 300 classes do not fit uint8: comparing against an arange in the labels' dtype would wrap.
    net = TwoLayerNet(4, 3, 300, seed=0, dtype="float64", **backend.net_kwargs())
    x = backend.asarray(np.ones((2, 4)))
    reference = float(net.loss(x, backend.asarray(np.array([1, 2]))))
    assert float(net.loss(x, backend.asarray(np.array([1, 2], dtype=label_dtype)))) == reference
    if label_dtype != "uint8":
        bad = backend.asarray(np.array([1, 300], dtype=label_dtype))
        if net.backend_info.reads_values_freely:
            with pytest.raises(ValueError, match=r"expected integers in \[0, 299\]"):
                net.loss(x, bad)
        else:  # not read at every call: the loss layer makes the loss NaN instead
            assert np.isnan(float(net.loss(x, bad)))
        with pytest.raises(ValueError, match=r"expected integers in \[0, 299\]"):
            net.accuracy(x, bad)
