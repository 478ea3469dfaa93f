"""Dask on a real (local) cluster: data chunked along the batch, reductions across chunks.

The backend fixture already runs every test on Dask in this process's scheduler; these tests add
what only a cluster shows: a ``dask.distributed.LocalCluster`` of two worker processes on
127.0.0.1, data larger than one chunk, and results equal to NumPy's.
"""

from __future__ import annotations

import numpy as np
import pytest

import bpcore
from bpcore.datasets import load_digits
from bpcore.optimizers import SGD

# A cluster of worker processes, and trainings on it. One pytest-xdist worker runs the module,
# so only one cluster runs at a time: two would compete for the scheduler's HTTP port (a
# warning, which is an error here).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask-cluster")]

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

CHUNK = 400  # rows per chunk: the 1,437 training digits make 4 chunks


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            host="127.0.0.1",
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: never 8787, which another cluster may hold
            memory_limit="1GiB",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def digits():
    (x_train, t_train), (x_test, t_test) = load_digits()
    return x_train, t_train, x_test, t_test


def _chunked(a):
    return da.from_array(a, chunks=(CHUNK, *a.shape[1:]))


def _nets():
    kwargs = {"weight_init_std": "he", "seed": 0}
    return (
        bpcore.MultiLayerNet(64, [32], 10, backend="dask", **kwargs),
        bpcore.MultiLayerNet(64, [32], 10, backend="numpy", **kwargs),
    )


def test_the_cluster_tests_share_one_worker(request):
    # Under --dist loadgroup (CI's test command) pytest-xdist names the group in the node ID; a
    # pytest it cannot do that with would spread these tests, and their clusters, over workers.
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@dask-cluster"), request.node.nodeid


def test_predict_and_accuracy_over_many_chunks(client, digits):
    x_train, t_train, _, _ = digits
    x, t = _chunked(x_train), _chunked(t_train)
    assert x.numblocks[0] == 4
    net, ref = _nets()
    with distributed.get_task_stream(client) as stream:
        scores = net.predict(x)
        assert isinstance(scores, da.Array) and scores.numblocks[0] == 4  # lazy, still chunked
        accuracy = net.accuracy(x, t)
    np.testing.assert_allclose(scores.compute(), ref.predict(x_train), rtol=1e-5, atol=1e-6)
    assert accuracy == ref.accuracy(x_train, t_train)
    assert {task["worker"] for task in stream.data}  # the workers did the work


def test_training_steps_reduce_across_chunks(client, digits):
    x_train, t_train, _, _ = digits
    x, t = _chunked(x_train), _chunked(t_train)
    net, ref = _nets()
    grads, expected = net.gradient(x, t), ref.gradient(x_train, t_train)
    for key in expected:  # dW = x.T @ dout sums over every chunk of the batch
        assert isinstance(grads[key], np.ndarray)  # computed: ordinary arrays, like the params
        np.testing.assert_allclose(grads[key], expected[key], rtol=2e-4, atol=1e-6)
    first = float(net.loss(x, t))
    opt, opt_ref = SGD(lr=0.1), SGD(lr=0.1)
    for _ in range(3):
        opt.update(net.params, net.gradient(x, t))
        opt_ref.update(ref.params, ref.gradient(x_train, t_train))
    for key, value in net.params.items():
        assert isinstance(value, np.ndarray)
        np.testing.assert_allclose(value, ref.params[key], rtol=1e-4, atol=1e-5)
    assert float(net.loss(x, t)) < first


def test_trainer_on_the_cluster(client, digits):
    x_train, t_train, x_test, t_test = digits
    net, ref = _nets()
    history = {}
    for name, network in (("dask", net), ("numpy", ref)):
        trainer = bpcore.Trainer(
            network,
            x_train,
            t_train,
            x_test,
            t_test,
            epochs=2,
            mini_batch_size=100,
            optimizer="Adam",
            optimizer_param={"lr": 1e-2},
            verbose=False,
            seed=0,
        )
        history[name] = trainer.train()
    assert history["dask"]["test_acc"][-1] > 0.85  # NumPy: 0.79 after one epoch, 0.91 after two
    # The same seed reaches the same test accuracy on the cluster as on NumPy (within 0.01).
    assert abs(history["dask"]["test_acc"][-1] - history["numpy"]["test_acc"][-1]) <= 0.01
    np.testing.assert_allclose(
        history["dask"]["train_loss"], history["numpy"]["train_loss"], rtol=1e-3
    )


def test_inputs_and_labels_from_two_libraries_are_refused(digits):
    x_train, t_train, _, _ = digits
    net, _ = _nets()
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(
        TypeError, match="x and t must be arrays of one library, got dask and numpy"
    ):
        net.gradient(_chunked(x_train), t_train)
    for key, value in net.params.items():
        np.testing.assert_array_equal(value, before[key])


def test_numpy_data_on_a_dask_network_is_computed_eagerly(digits):
    # NumPy is the chunks' library: a Dask network takes it as it is, and so do its checks.
    x_train, t_train, _, _ = digits
    net, ref = _nets()
    scores = net.predict(x_train[:50])
    assert isinstance(scores, np.ndarray)
    np.testing.assert_array_equal(scores, ref.predict(x_train[:50]))
    assert bpcore.gradient_check(net, _chunked(x_train[:5]), _chunked(t_train[:5])).passed


def test_a_training_step_runs_its_forward_pass_once(digits):
    # With the progress bar on, the running accuracy must come from the step's own computation,
    # not from lazy scores that each read-back of the bar would compute again.
    import dask
    from dask.callbacks import Callback

    x_train, t_train, x_test, t_test = digits
    net, _ = _nets()
    exps = []

    class CountExp(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            name = key[0] if isinstance(key, tuple) else key
            if str(name).startswith("exp-"):
                exps.append(key)

    # The local scheduler (callbacks see its tasks), for persisting the data too: this module's
    # cluster client, if one is open, is Dask's default otherwise.
    with dask.config.set(scheduler="sync"), CountExp():
        trainer = bpcore.Trainer(
            net,
            x_train,
            t_train,
            x_test,
            t_test,
            epochs=1,
            mini_batch_size=100,
            verbose=True,
            seed=0,
        )
        trainer.train()
    assert len(exps) == trainer.iter_per_epoch  # one softmax per step: 15, not 30 or more
