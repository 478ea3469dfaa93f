"""Backend selection, devices, conversion and seeded initialization."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

import bpcore
from bpcore import MultiLayerNet, TwoLayerNet, to_numpy
from bpcore.backends import resolve_backend
from bpcore.initializers import init_scale, initial_weights
from bpcore.testing import backend_cases


def test_import_loads_no_optional_backend():
    code = (
        "import sys, bpcore, bpcore.layers, bpcore.testing; "
        "print(sorted(m for m in ('torch', 'cupy', 'array_api_strict', 'jax', 'dask') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BPCORE_BACKEND": "torch"},
    )
    assert out.stdout.strip() == "[]"


def test_version():
    assert bpcore.__version__.count(".") == 2


def test_available_backends_reports_each_test_case():
    found = bpcore.available_backends()
    assert found["numpy"] == ["cpu"]
    for case in backend_cases():
        assert case.device in found[case.name] or case.name == "array_api_strict"


def test_backend_from_environment(backend, monkeypatch):
    monkeypatch.setenv("BPCORE_BACKEND", backend.name)
    net = TwoLayerNet(4, 3, 2, seed=0, device=backend.device)
    assert net.backend == backend.name
    assert net.xp is backend.xp


def test_default_backend_is_numpy(monkeypatch):
    monkeypatch.delenv("BPCORE_BACKEND", raising=False)
    net = TwoLayerNet(4, 3, 2, seed=0)
    assert net.backend == "numpy"
    assert isinstance(net.params["W1"], np.ndarray)


def test_namespace_modules_as_backend(backend):
    modules = {
        "numpy": ["numpy", "array_api_compat.numpy"],
        "torch": ["torch", "array_api_compat.torch"],
        "cupy": ["cupy", "array_api_compat.cupy"],
        "array_api_strict": ["array_api_strict"],
        "jax": ["jax.numpy"],
        "dask": ["dask.array", "array_api_compat.dask.array"],
    }[backend.name]
    for module_name in modules:
        module = importlib.import_module(module_name)
        resolved = resolve_backend(module, backend.device)
        assert resolved.name == backend.name
        assert resolved.xp is backend.xp  # always the array-api-compat namespace, if it has one


def test_a_module_that_is_no_namespace():
    with pytest.raises(TypeError, match="not an Array API namespace"):
        TwoLayerNet(4, 3, 2, backend=os)


def test_params_live_on_the_backend_and_device(backend, dtype):
    import array_api_compat

    net = TwoLayerNet(4, 3, 2, seed=0, dtype=dtype, **backend.net_kwargs())
    expected_device = backend.resolve().device
    for value in net.params.values():
        assert array_api_compat.array_namespace(value) is backend.param_xp
        assert array_api_compat.device(value) == expected_device
        assert value.dtype == getattr(backend.param_xp, dtype)
    assert net.device == expected_device


def test_dtype_objects_are_accepted(backend):
    net = TwoLayerNet(4, 3, 2, seed=0, dtype=backend.xp.float64, **backend.net_kwargs())
    assert net.dtype == backend.xp.float64


def test_strict_devices_by_name():
    net = TwoLayerNet(4, 3, 2, seed=0, backend="array_api_strict", device="device2")
    import array_api_strict

    assert net.params["W1"].device == array_api_strict.Device("device2")


@pytest.mark.parametrize("net_dtype", ["float32", "float64"])
def test_same_seed_same_bits_on_every_backend(backend, net_dtype):
    # Against the host draw, so that a run narrowed to one backend still compares something.
    sizes = [20, 16, 8, 5]
    expected = initial_weights(sizes, "he", net_dtype, seed=42)
    net = MultiLayerNet(
        20, [16, 8], 5, weight_init_std="he", seed=42, dtype=net_dtype, **backend.net_kwargs()
    )
    for key, value in net.params.items():
        got = to_numpy(value)
        assert got.dtype == expected[key].dtype
        assert got.tobytes() == expected[key].tobytes(), key
    assert np.any(expected["W1"] != 0)
    # And the host draw is the documented one: scale * standard_normal, W1 first.
    rng = np.random.default_rng(42)
    W1 = (np.sqrt(2 / 20) * rng.standard_normal((20, 16))).astype(net_dtype)
    assert W1.tobytes() == expected["W1"].tobytes()


def test_seeds_matter():
    a = TwoLayerNet(10, 5, 3, seed=1).params["W1"]
    b = TwoLayerNet(10, 5, 3, seed=2).params["W1"]
    c = TwoLayerNet(10, 5, 3, seed=np.random.default_rng(1)).params["W1"]
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(
        TwoLayerNet(10, 5, 3).params["W1"], TwoLayerNet(10, 5, 3).params["W1"]
    )


@pytest.mark.parametrize(
    ("name", "factor"),
    [("relu", 2.0), ("he", 2.0), ("sigmoid", 1.0), ("xavier", 1.0), ("lecun", 1.0)],
)
def test_named_initializations_have_the_books_scale(name, factor):
    net = MultiLayerNet(400, [300], 10, weight_init_std=name, seed=0, dtype="float64")
    W1, W2 = net.params["W1"], net.params["W2"]
    assert np.std(W1) == pytest.approx(np.sqrt(factor / 400), rel=0.02)
    assert np.std(W2) == pytest.approx(np.sqrt(factor / 300), rel=0.05)
    assert not np.any(net.params["b1"])
    assert init_scale(name, 100) == pytest.approx(np.sqrt(factor / 100))


def test_float_init_std():
    net = TwoLayerNet(500, 200, 10, weight_init_std=0.01, seed=0, dtype="float64")
    assert np.std(net.params["W1"]) == pytest.approx(0.01, rel=0.02)


def test_to_numpy(backend, rng):
    host = rng.standard_normal((3, 4))
    out = to_numpy(backend.asarray(host))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, host)
    assert isinstance(to_numpy(backend.xp.sum(backend.asarray(host))), np.ndarray)
    np.testing.assert_array_equal(to_numpy([1, 2]), np.array([1, 2]))
    assert to_numpy(np.float64(2.5)).shape == ()


def test_networks_deep_copy_and_pickle(backend, rng):
    import copy
    import pickle

    net = MultiLayerNet(6, [5], 3, seed=0, **backend.net_kwargs())
    x = backend.asarray(rng.standard_normal((4, 6)), "float32")
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert clone.backend == net.backend
        assert clone.layers["Affine1"].W is clone.params["W1"]
        np.testing.assert_array_equal(to_numpy(clone.predict(x)), to_numpy(net.predict(x)))
        # The clone's parameters are its own.
        clone.params["W1"] = clone.backend_info.param_xp.zeros_like(clone.params["W1"])
        assert np.any(to_numpy(net.params["W1"]) != 0)


@pytest.mark.slow
def test_jax_is_float32_until_float64_is_asked_for():
    # JAX computes "float64" in float32 unless its x64 mode is on: a float32 network must leave
    # the mode off, and a float64 one must turn it on (and really hold float64). A fresh process,
    # since the mode is process-wide and the test suite's JAX cases turn it on.
    pytest.importorskip("jax")
    code = """if True:
        import logging, jax, numpy as np
        from bpcore import TwoLayerNet
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
        net = TwoLayerNet(4, 3, 2, backend="jax", seed=0)
        x, t = jax.numpy.ones((2, 4)), jax.numpy.asarray([0, 1])
        grads = net.gradient(x, t)
        net.backend_info.dtype("float64")  # looking a dtype up switches nothing
        assert not jax.config.jax_enable_x64
        assert str(grads["W1"].dtype) == "float32" and net.accuracy(x, t) >= 0
        net64 = TwoLayerNet(4, 3, 2, backend="jax", dtype="float64", seed=0)
        assert jax.config.jax_enable_x64
        TwoLayerNet(4, 3, 2, backend="jax", dtype="float64", seed=1)
        assert str(net64.params["W1"].dtype) == str(net64.gradient(x, t)["W1"].dtype) == "float64"
        assert str(net.gradient(x, t)["W1"].dtype) == "float32"
        print("ok")
    """
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    # Turned on explicitly, and said once (two float64 networks, one message).
    assert out.stderr.count("bpcore: bpcore turned on JAX's x64 mode") == 1, out.stderr


@pytest.mark.slow
def test_jax_trains_and_checkpoints_without_x64(tmp_path):
    # The suite's JAX cases run with x64 on (see BackendCase.backend); JAX's default mode, with
    # 32-bit integers too, gets a training run and a checkpoint round trip of its own.
    pytest.importorskip("jax")
    code = f"""if True:
        import jax
        import bpcore
        from bpcore.datasets import load_digits
        (x, t), (xt, tt) = load_digits()
        net = bpcore.MultiLayerNet(64, [32], 10, backend="jax", seed=0)
        trainer = bpcore.Trainer(net, x, t, xt, tt, epochs=2, mini_batch_size=64,
                                 optimizer="Adam", verbose=False, seed=0)
        acc = trainer.train()["test_acc"][-1]
        net.save({str(tmp_path / "net.npz")!r})
        back = bpcore.load({str(tmp_path / "net.npz")!r}, backend="jax")
        assert abs(back.accuracy(jax.numpy.asarray(xt), jax.numpy.asarray(tt)) - acc) < 1e-6
        assert acc > 0.8 and not jax.config.jax_enable_x64
        print("ok")
    """
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_jax_moves_host_arrays_by_a_copy_that_compiles_nothing(caplog):
    # jnp.asarray(host, device=...) compiles a cast and a placement for every new shape (tens of
    # ms each), and jax.device_put alone may share an aligned NumPy buffer on the CPU, so that
    # writing to it later would change an "immutable" JAX array.
    jax = pytest.importorskip("jax")
    backend = resolve_backend("jax")
    hosts = [np.ones(shape, dtype) for shape in ((64, 64), (1000,), (3, 7, 5)) for dtype in "fB"]
    with caplog.at_level("DEBUG"), jax.log_compiles(True):
        moved = [backend.asarray(host) for host in hosts]
        jax.block_until_ready(moved)
    assert not [r.message for r in caplog.records if "Compiling" in r.message]
    for host, array in zip(hosts, moved, strict=True):
        assert isinstance(array, jax.Array) and array.dtype == host.dtype
        assert array.devices() == {backend.device}
        host[...] = 0  # the caller's array is theirs to write
        np.testing.assert_array_equal(np.asarray(array), np.ones_like(host))


def test_each_backend_reports_its_version_and_devices(backend):
    # What `bpcore info` shows per backend: JSON-ready, with the device the tests run on.
    import json

    from bpcore.backends import available_backends, resolve_backend

    resolved = resolve_backend(backend.name, backend.device)
    found = type(resolved).report(resolved.xp)
    assert json.loads(json.dumps(found)) == found
    assert found["version"] not in ("", "unknown")
    assert found["devices"] and found["devices"] == available_backends()[backend.name]
    for gpu in found.get("gpus", []):
        assert gpu["name"] and (gpu["memory_gib"] is None or gpu["memory_gib"] > 0)


def test_read_floats_reads_a_loops_scalars_back_together(backend):
    # A training loop's losses (float) and hit counts (integer), 0-d on the device: read back
    # as one float64 NumPy array, non-finite values kept (the Trainer looks for them).
    resolved = backend.resolve()
    losses = [backend.asarray(v, "float32") for v in (0.5, 2.25, np.inf)]
    counts = [backend.asarray(v) for v in (3, 0, 7)]
    for values, expected in ((losses, [0.5, 2.25, np.inf]), (counts, [3.0, 0.0, 7.0])):
        got = type(resolved).read_floats(values)
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
        np.testing.assert_array_equal(got, expected)
    assert type(resolved).read_floats([]).shape == (0,)


def test_devices_print_alike_on_every_backend(backend, capsys):
    # Each library prints its CPU its own way ('cpu', device(type='cpu'), CpuDevice(id=0),
    # Device('CPU_DEVICE')); bpcore says what its device= options take.
    from bpcore.cli import main

    net = TwoLayerNet(4, 3, 2, seed=0, **backend.net_kwargs())
    name = net.backend_info.device_name
    assert name == backend.device
    assert f"device='{name}'" in repr(net)
    assert f"device: {name}" in net.summary()
    assert resolve_backend(backend.name, name).device == net.device  # the name works as device=
    if name.startswith("cpu"):
        assert name == "cpu"
    assert main(["info"]) == 0
    assert "CPU_DEVICE" not in capsys.readouterr().out
