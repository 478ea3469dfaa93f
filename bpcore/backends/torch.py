"""PyTorch, on the CPU, CUDA or Apple's MPS: tensors as Array API arrays."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .base import Array, Backend, Namespace, cuda_driver_version, gpu, int_seed

__all__ = ["TorchBackend"]


class _TorchConv2d:
    """PyTorch's own convolution (oneDNN on the CPU, cuDNN on CUDA) behind
    `bpcore.layers.Convolution`: the book's cross-correlation, with its stride and padding."""

    @staticmethod
    def accepts(x: Array, W: Array, stride: int, pad: int) -> bool:
        """True: every input and geometry the layer takes."""
        return True

    @staticmethod
    def forward(x: Array, W: Array, b: Array, stride: int, pad: int) -> Array:
        import torch

        return torch.nn.functional.conv2d(x, W, b, stride=stride, padding=pad)

    @staticmethod
    def backward(
        x: Array, W: Array, dout: Array, stride: int, pad: int, input_grad: bool
    ) -> tuple[Array | None, Array, Array]:
        import torch

        dx, dW, db = torch.ops.aten.convolution_backward(
            dout, x, W, [W.shape[0]], [stride, stride], [pad, pad], [1, 1], False, [0, 0], 1,
            [input_grad, True, True],
        )  # fmt: skip
        return dx, dW, db


class _TorchMaxPool2d:
    """PyTorch's own max pooling behind `bpcore.layers.Pooling`: the gradient goes to the
    first maximum of each window, row by row, as the layer's own code sends it."""

    @staticmethod
    def forward(
        x: Array, pool_h: int, pool_w: int, stride: int, pad: int
    ) -> tuple[Array, Any] | None:
        import torch

        if 2 * pad > min(pool_h, pool_w):
            return None  # PyTorch pads at most half a window: the layer's own code does it
        if x.device.type == "cpu":
            # PyTorch's CPU max pooling is several times faster on channels-last images, the
            # copy included: SimpleConvNet's 2x2 pooling of (100, 30, 24, 24) 4.5 ms as it is,
            # 0.6 + 0.8 ms through the copy (2 cores). The indices (into each image plane) and
            # the values are the same; backward takes the layer's own input.
            x = x.contiguous(memory_format=torch.channels_last)
        out, indices = torch.nn.functional.max_pool2d(
            x, (pool_h, pool_w), stride, pad, return_indices=True
        )
        return out, indices

    @staticmethod
    def backward(
        x: Array, dout: Array, indices: Any, pool_h: int, pool_w: int, stride: int, pad: int
    ) -> Array:
        import torch

        return torch.ops.aten.max_pool2d_with_indices_backward(
            dout, x, [pool_h, pool_w], [stride, stride], [pad, pad], [1, 1], False, indices
        )


def _relu_backward(out: Array, dout: Array) -> Array:
    """``dout`` where the ReLU's output is positive, else 0, in one pass (``threshold_backward``,
    PyTorch's own ReLU gradient): the Array API code's comparison, conversion and product take
    three, 1.0 ms against 0.18 for SimpleConvNet's first ReLU on 2 CPU cores. Where the output
    is NaN it passes ``dout``, as the book's ``Relu`` does; the reference code gives 0 there."""
    import torch

    return torch.ops.aten.threshold_backward(dout, out, 0)


class TorchBackend(Backend):
    """PyTorch tensors (through ``array_api_compat.torch``) on one ``torch.device``."""

    name = "torch"
    native_conv2d = _TorchConv2d()
    native_max_pool2d = _TorchMaxPool2d()
    native_relu_backward = staticmethod(_relu_backward)
    namespace_module = "array_api_compat.torch"
    install = (
        'pip install "torch>=2.4" (in a clone of bpcore: pip install -e ".[torch]"); where pip '
        "would fetch a CUDA build of several GB and you want the CPU-only one: pip install torch "
        "--index-url https://download.pytorch.org/whl/cpu"
    )

    @property
    def reads_values_freely(self) -> bool:
        """True on the CPU; false on a GPU, where a read waits for the device's queue."""
        return bool(self.device.type == "cpu")

    @classmethod
    def owns_namespace(cls, xp: Namespace) -> bool:
        return bool(array_api_compat.is_torch_namespace(xp))

    @classmethod
    def owns_array(cls, a: Any) -> bool:
        return bool(array_api_compat.is_torch_array(a))

    @classmethod
    def device_names(cls, xp: Namespace) -> list[str]:
        import torch

        names = ["cpu"]
        if torch.cuda.is_available():
            names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if torch.backends.mps.is_available():
            names.append("mps")
        return names

    @classmethod
    def report(cls, xp: Namespace) -> dict[str, Any]:
        """Version, devices, intra-op threads, float32 matmul settings; GPUs, CUDA runtime and
        driver where CUDA is.

        The runtime is the CUDA version PyTorch was built with and ships (None for a CPU
        build); the driver is asked of the driver itself. ``float32_matmul_precision`` and the
        two TF32 switches say whether float32 products on an NVIDIA GPU may round their inputs
        to TF32 (10 bits of mantissa): what ``bpcore compare`` then sees as a departure.
        """
        import torch

        found = super().report(xp)
        found["threads"] = torch.get_num_threads()
        found["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        found["cuda_matmul_allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
        found["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
        found["cuda_runtime"] = torch.version.cuda
        found["gpus"] = []
        if torch.cuda.is_available():
            found["gpus"] = [
                gpu(props.name, int(props.total_memory))
                for props in map(torch.cuda.get_device_properties, range(torch.cuda.device_count()))
            ]
            found["cuda_driver"] = cuda_driver_version()
        return found

    @classmethod
    def test_devices(cls, devices: list[str]) -> list[str]:
        """The CPU, and the first CUDA device when there is one."""
        return ["cpu", *[d for d in devices if d.startswith("cuda")][:1]]

    @classmethod
    def case_id(cls, device: str) -> str:
        """``torch-cpu``, ``torch-cuda``: PyTorch is tested on two kinds of device."""
        return f"torch-{device.split(':')[0]}"

    @classmethod
    def parse_device(cls, xp: Namespace, device: Any) -> Any:
        import torch

        if device is None:
            return torch.empty(0).device  # honours torch.set_default_device
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"backend 'torch' does not know device={device!r}: {exc}") from None
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = (
                dev.index
                if dev.index is not None
                else (torch.cuda.current_device() if count else 0)
            )
            if not 0 <= index < count:
                raise ValueError(
                    f"device {device!r} is not available: torch sees {count} CUDA device(s)"
                )
            dev = torch.device("cuda", index)
        elif dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' is not available to torch here")
        elif dev.type != "cpu":
            # Tensors report an indexed device ("mps:0"), which does not equal
            # torch.device("mps").
            dev = torch.empty(0, device=dev).device
        return dev

    @classmethod
    def to_numpy(cls, a: Array) -> np.ndarray:
        return np.asarray(a.detach().cpu().numpy())

    @classmethod
    def synchronize(cls, a: Array) -> None:
        if a.device.type == "cuda":
            import torch

            torch.cuda.synchronize(a.device)

    def random_generator(self, seed: Any = None) -> Any:
        """A ``torch.Generator`` on the tensors' device: masks are drawn where they are used."""
        import torch

        generator = torch.Generator(device=self.device)
        generator.manual_seed(int_seed(seed))
        return _TorchRandom(generator, self.device)


class _TorchRandom:
    """``torch.rand`` from one seeded generator on one device."""

    def __init__(self, generator: Any, device: Any) -> None:
        self._generator = generator
        self._device = device

    def __repr__(self) -> str:
        return f"_TorchRandom(device={self._device!r})"

    def random(self, shape: tuple[int, ...], dtype_name: str) -> Array:
        """Uniform numbers in [0, 1), drawn on the device."""
        import torch

        return torch.rand(
            shape, generator=self._generator, device=self._device, dtype=getattr(torch, dtype_name)
        )

    def get_state(self) -> np.ndarray:
        """The generator's state (``torch.Generator.get_state``), as a uint8 array."""
        return self._generator.get_state().numpy().copy()  # type: ignore[no-any-return]

    def set_state(self, state: np.ndarray) -> None:
        """Go on from a state `get_state` returned."""
        import torch

        self._generator.set_state(torch.from_numpy(np.array(state, dtype=np.uint8)))
