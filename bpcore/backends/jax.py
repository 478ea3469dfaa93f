"""JAX: immutable arrays, asynchronous dispatch, and a process-wide switch for float64."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat
import numpy as np

from .base import Array, Backend, Namespace, cuda_driver_version, gpu, int_seed, replaced

__all__ = ["JAXBackend"]

_log = logging.getLogger("bpcore")

# How many elements a numerical gradient perturbs in one compiled batch. Memory: this many
# copies of the forward pass's activations at once, little for the small batches a check uses.
_DIFFERENCE_BATCH = 256


class _JAXConv2d:
    """XLA's own convolution (``jax.lax.conv_general_dilated``) behind
    `bpcore.layers.Convolution`: the book's cross-correlation, with its stride and padding.

    Both gradients are the convolution's linear transposes (``jax.linear_transpose``): the
    convolution is linear in the input and in the filters, so neither recomputes the forward
    pass, and XLA compiles them to its own kernels.
    """

    @staticmethod
    def _conv(x: Array, W: Array, stride: int, pad: int) -> Array:
        from jax import lax

        return lax.conv_general_dilated(
            x,
            W,
            (stride, stride),
            [(pad, pad), (pad, pad)],
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            precision=lax.Precision.HIGHEST,  # float32 products, as the reference path's
        )

    @staticmethod
    def accepts(x: Array, W: Array, stride: int, pad: int) -> bool:
        """False where the layer's own code is faster on XLA's CPU (measured at batch 100):

        * padding of half a filter or more: XLA's kernel for the filters' gradient is then over
          ten times slower (84 ms against 6 for a 3x3 layer with padding 2);
        * one input channel (a first layer) inside a compiled program (``jax.jit``, as
          `compile_step` runs): XLA fuses the layer's window slices and product there, and
          SimpleConvNet's first layer's forward and filters' gradient take 7.0 ms against
          11.2 on XLA's kernel (DeepConvNet's: 6.2 against 8.2). Called eagerly, each slice
          is a dispatch of its own, and XLA's kernel is the faster (16.8 ms against 19.9).
        """
        import jax

        if 2 * pad >= min(W.shape[2], W.shape[3]):
            return False
        traced = isinstance(x, jax.core.Tracer) or isinstance(W, jax.core.Tracer)
        return not (W.shape[1] == 1 and traced)

    @classmethod
    def forward(cls, x: Array, W: Array, b: Array, stride: int, pad: int) -> Array:
        return cls._conv(x, W, stride, pad) + b[None, :, None, None]

    @classmethod
    def backward(
        cls, x: Array, W: Array, dout: Array, stride: int, pad: int, input_grad: bool
    ) -> tuple[Array | None, Array, Array]:
        import jax

        (dW,) = jax.linear_transpose(lambda w: cls._conv(x, w, stride, pad), W)(dout)
        dx = None
        if input_grad:
            (dx,) = jax.linear_transpose(lambda v: cls._conv(v, W, stride, pad), x)(dout)
        return dx, dW, jax.numpy.sum(dout, axis=(0, 2, 3))


class JAXBackend(Backend):
    """``jax.numpy`` arrays on one ``jax.Device``.

    JAX arrays cannot be written to: optimizers assign new arrays and numerical gradients build
    perturbed copies. JAX computes in float32 unless its process-wide x64 mode is on;
    `enable_float64` turns it on, explicitly, when a float64 network or a float64 gradient
    check asks for it, and logs that once.
    """

    name = "jax"
    namespace_module = "jax.numpy"  # an Array API namespace itself
    install = 'pip install "jax>=0.4.36" (in a clone of bpcore: pip install -e ".[jax]")'
    native_conv2d = _JAXConv2d()

    @property
    def reads_values_freely(self) -> bool:
        """False: a read waits for the asynchronous dispatch."""
        return False

    @classmethod
    def owns_namespace(cls, xp: Namespace) -> bool:
        return bool(array_api_compat.is_jax_namespace(xp))

    @classmethod
    def owns_array(cls, a: Any) -> bool:
        return bool(array_api_compat.is_jax_array(a))

    @classmethod
    def device_names(cls, xp: Namespace) -> list[str]:
        import jax

        return [cls.name_of(d) for d in jax.devices()]

    @classmethod
    def name_of(cls, device: Any) -> str:
        """``cpu`` for JAX's CPU device, ``cuda:N`` for its N-th GPU, as the other backends."""
        return _device_name(device)

    @classmethod
    def report(cls, xp: Namespace) -> dict[str, Any]:
        """Version, jaxlib's, devices, the default matmul precision; each GPU's kind, and what
        JAX may allocate of it; the driver.

        JAX reports no GPU's total memory, only its allocator's limit (75% of it by default, or
        ``XLA_PYTHON_CLIENT_MEM_FRACTION``), which is reported as ``jax_memory_limit_gib``.
        """
        import importlib.metadata

        import jax

        found = super().report(xp)
        found["jaxlib"] = importlib.metadata.version("jaxlib")
        # None is JAX's default: on NVIDIA GPUs float32 products then round to TF32 or bf16.
        found["default_matmul_precision"] = jax.config.jax_default_matmul_precision
        gpus = []
        for device in jax.devices():
            if device.platform == "gpu":
                limit = (device.memory_stats() or {}).get("bytes_limit")
                gpus.append(
                    gpu(
                        str(device.device_kind),
                        None,
                        jax_memory_limit_gib=None if limit is None else round(limit / 2**30, 1),
                    )
                )
        found["gpus"] = gpus
        if gpus:
            found["cuda_driver"] = cuda_driver_version()
        return found

    @classmethod
    def parse_device(cls, xp: Namespace, device: Any) -> Any:
        import jax

        if device is None:
            return jax.devices()[0]
        if isinstance(device, jax.Device):
            return device
        if isinstance(device, int) and not isinstance(device, bool):
            platform, index = None, device
        elif isinstance(device, str) and (
            m := re.fullmatch(r"(cpu|cuda|gpu|tpu)(?::(\d+))?", device.strip().lower())
        ):
            platform = "gpu" if m.group(1) == "cuda" else m.group(1)
            index = int(m.group(2) or 0)
        else:
            raise ValueError(
                f"backend 'jax' expects device 'cpu', 'cuda', 'cuda:N', an ordinal or a "
                f"jax.Device, got device={device!r}"
            )
        try:
            devices = jax.devices(platform)
        except RuntimeError:  # no backend for that platform here
            devices = []
        if not 0 <= index < len(devices):
            raise ValueError(f"device {device!r} is not available: jax sees {jax.devices()}")
        return devices[index]

    def picklable_device(self) -> Any:
        return _device_name(self.device)

    def asarray(self, host: np.ndarray) -> Array:
        """Copy a NumPy array to this backend's device, by ``jax.device_put``.

        ``jnp.asarray(host, device=...)`` compiles two programs (a cast and a placement) for
        each new shape and dtype, some 50 ms on a small CPU; a transfer compiles none. The
        host array is copied first: on the CPU, ``device_put`` may share an aligned NumPy
        buffer instead of copying it (``may_alias=False`` included, in jax 0.10), and the
        caller's later writes to it would show through.
        """
        import jax

        return jax.device_put(np.array(host, copy=True), self.device)

    @classmethod
    def read_floats(cls, values: Sequence[Any]) -> np.ndarray:
        """Many 0-d arrays read back together by ``jax.device_get``: stacking them first would
        compile one more program for each count of values."""
        import jax

        return np.asarray(jax.device_get(list(values)), dtype=np.float64)

    @classmethod
    def synchronize(cls, a: Array) -> None:
        a.block_until_ready()  # JAX dispatches asynchronously on every device, the CPU too

    def enable_float64(self) -> None:
        """Turn on JAX's x64 mode, for the whole process, and say so once.

        Without it JAX silently computes "float64" arrays in float32. float32 arrays stay
        float32 with the mode on; integer defaults become int64.
        """
        import jax

        if not jax.config.jax_enable_x64:
            jax.config.update("jax_enable_x64", True)
            _log.warning(
                "bpcore turned on JAX's x64 mode for this process, for float64 arrays "
                "(jax.config.update('jax_enable_x64', True))"
            )

    def central_difference(self, f: Callable[[Array], Array], x: Array, h: float) -> Array:
        """See `central_differences`, for one array."""
        return self.central_differences(lambda arrays: f(arrays[0]), [x], h)[0]

    def central_differences(
        self, f: Callable[[list[Array]], Array], arrays: Sequence[Array], h: float
    ) -> list[Array]:
        """Every element's pair of losses, for all ``arrays``, in one compiled program.

        Not an eager Python loop: ``jax.lax.map`` runs ``f`` over batches of element indices
        (into all the arrays, one after the other), and ``jax.jit`` compiles the whole map,
        once for all the arrays (without it, the batch that does not fill `_DIFFERENCE_BATCH`
        runs eagerly, one compilation per operation). That needs a traceable ``f`` (no Python
        decisions on array values), as bpcore's layers are; for one that is not (a custom layer
        calling ``bool`` on an array), this falls back to the eager loop.
        """
        import jax

        arrays = list(arrays)
        shapes = [tuple(a.shape) for a in arrays]
        sizes = [int(np.prod(shape)) for shape in shapes]
        total = sum(sizes)
        if total == 0:
            return [array_api_compat.array_namespace(a).zeros_like(a) for a in arrays]
        xp = array_api_compat.array_namespace(*arrays)
        offsets = np.cumsum([0, *sizes[:-1]]).tolist()

        def differences(indices: Array) -> list[Array]:
            # Element j of array k has index offsets[k] + j: one index moves one element.
            positions = [
                xp.reshape(xp.arange(size) + offset, shape)
                for size, offset, shape in zip(sizes, offsets, shapes, strict=True)
            ]

            def difference(i: Array) -> Array:
                moved = [
                    xp.where(p == i, xp.asarray(h, dtype=a.dtype), xp.zeros_like(a))
                    for p, a in zip(positions, arrays, strict=True)
                ]
                plus = [a + m for a, m in zip(arrays, moved, strict=True)]
                minus = [a - m for a, m in zip(arrays, moved, strict=True)]
                return f(plus) - f(minus)

            diffs = jax.lax.map(difference, indices, batch_size=min(total, _DIFFERENCE_BATCH))
            # Split and scaled in the program too: eagerly, each array's slice, reshape and
            # division would compile three more programs for each new shape.
            return [
                xp.reshape(diffs[offset : offset + size], shape) / (2 * h)
                for size, offset, shape in zip(sizes, offsets, shapes, strict=True)
            ]

        try:
            grads: list[Array] = jax.jit(differences)(self.asarray(np.arange(total)))
        except jax.errors.ConcretizationTypeError:  # f is not traceable: the eager loop
            grads = []
            for k, x in enumerate(arrays):

                def f_k(a: Array, k: int = k) -> Array:
                    return f(replaced(arrays, k, a))

                grads.append(Backend.central_difference(self, f_k, x, h))
            return grads
        finally:
            f(arrays)  # once more, eagerly: the layers keep concrete arrays, not tracers
        return list(grads)

    def cache_compilations(self, folder: Any) -> None:
        """Turn on JAX's persistent compilation cache in ``folder``, unless one is set already.

        A compiled training step takes about a second to compile on a small CPU, longer than
        a short training run; with the cache a later run reads it back instead.
        """
        import jax

        if jax.config.jax_compilation_cache_dir:  # the user's (JAX_COMPILATION_CACHE_DIR) wins
            return
        jax.config.update("jax_compilation_cache_dir", str(folder))
        # JAX keeps only programs that took a second or more to compile by default; the
        # small ones add up too (one per operation and shape run eagerly).
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

    def compile(
        self, fn: Callable[..., Any], *, donate_argnums: tuple[int, ...] = ()
    ) -> Callable[..., Any] | None:
        """``jax.jit(fn)``: traced once per shape of the arguments, then one program per call."""
        import jax

        compiled: Callable[..., Any] = jax.jit(fn, donate_argnums=donate_argnums)
        return compiled

    def random_generator(self, seed: Any = None) -> Any:
        """A JAX PRNG key on the device, split at each draw: no host round trip."""
        return _JAXRandom(int_seed(seed), self.device)


class _JAXRandom:
    """``jax.random.uniform`` from a key that is split at each draw, kept on one device.

    ``key`` is the key of the next draw: a compiled training step carries it in and out as
    part of the network's state.
    """

    def __init__(self, seed: int, device: Any) -> None:
        import jax

        self.key = jax.device_put(jax.random.key(seed), device)
        self._device = device

    def __repr__(self) -> str:
        return f"_JAXRandom(device={self._device!r})"

    def random(self, shape: tuple[int, ...], dtype_name: str) -> Array:
        """Uniform numbers in [0, 1), drawn on the device: one compiled call, no transfer."""
        self.key, numbers = _split_and_draw()(self.key, tuple(shape), dtype_name)
        return numbers

    def get_state(self) -> np.ndarray:
        """The key of the next draw, as its raw uint32 data."""
        import jax

        return np.asarray(jax.random.key_data(self.key))

    def set_state(self, state: np.ndarray) -> None:
        """Go on from a key `get_state` returned."""
        import jax

        data = np.asarray(state, dtype=np.uint32)
        self.key = jax.device_put(jax.random.wrap_key_data(data), self._device)


@functools.cache
def _split_and_draw() -> Callable[..., tuple[Array, Array]]:
    """The next key and uniform numbers from a key, compiled once per shape and dtype.

    Compiled, the bounds 0 and 1 are constants of the program; eagerly, ``uniform`` would copy
    them from the host at every draw.
    """
    import jax

    def draw(key: Array, shape: tuple[int, ...], dtype_name: str) -> tuple[Array, Array]:
        key, sub = jax.random.split(key)
        return key, jax.random.uniform(sub, shape, dtype=getattr(jax.numpy, dtype_name))

    compiled: Callable[..., tuple[Array, Array]] = jax.jit(draw, static_argnums=(1, 2))
    return compiled


def _device_name(device: Any) -> str:
    """``cpu`` for JAX's CPU device, ``cuda:N`` for its N-th GPU, as the other backends say."""
    if device.platform == "cpu":
        return "cpu" if device.id == 0 else f"cpu:{device.id}"
    if device.platform == "gpu":
        return f"cuda:{device.id}"
    return f"{device.platform}:{device.id}"
