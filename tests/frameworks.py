"""One adapter per framework, so that one test body runs against both backends' code.

The TensorFlow and PyTorch backends implement the same functions under the same names
(``layers``, ``network``, ``model`` modules); what differs is the tensor type, how a
gradient is taken and a few framework-native views (parameter layout, device names).
A :class:`Framework` holds the backend's modules and exactly those few operations;
the ``framework`` fixture of tests/conftest.py gives one per installed framework (a
framework that is not installed is skipped with ``pytest.importorskip``).

Every conversion goes through numpy, so assertions compare numpy arrays with the numpy
reference of :mod:`ptychopinn_core.physics`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

#: Frameworks in test-id order; each maps to its backend's import package.
FRAMEWORKS = ("tf", "torch")


class Framework:
    """The backend modules and tensor operations of one framework.

    Attributes
    ----------
    name : str
        ``"tf"`` or ``"torch"`` (the test id).
    layers, network, model : module
        ``ptychopinn_<name>.layers``, ``.network``, ``.model``.
    kernel_layout : tuple of int
        Axis order of a native convolution kernel read from the canonical HWIO one
        (``native = canonical.transpose(kernel_layout)``).
    cpu_device, gpu_device
        What ``model.select_device`` returns for the CPU and for a GPU.
    """

    name: str
    layers: ModuleType
    network: ModuleType
    model: ModuleType
    kernel_layout: tuple[int, ...]
    cpu_device: Any
    gpu_device: Any

    def __repr__(self) -> str:
        return f"Framework({self.name!r})"

    # -- tensors --------------------------------------------------------------------------

    def tensor(self, values: Any) -> Any:
        """A framework tensor holding a copy of ``values`` (numpy dtype kept)."""
        raise NotImplementedError

    def numpy(self, tensor: Any) -> np.ndarray:
        """The values of a framework tensor as a numpy array."""
        raise NotImplementedError

    def abs(self, tensor: Any) -> Any:
        raise NotImplementedError

    def sum(self, tensor: Any) -> Any:
        """Sum of every element, a scalar tensor."""
        raise NotImplementedError

    def stop_gradient(self, tensor: Any) -> Any:
        raise NotImplementedError

    def value_and_gradients(self, function: Callable[..., Any], *inputs: np.ndarray) -> tuple[Any, list[np.ndarray]]:
        """``function(*tensors)`` (a real scalar) and its gradient with respect to each input.

        Parameters
        ----------
        function : callable
            Takes one framework tensor per input, returns a real scalar tensor.
        *inputs : ndarray
            Real or complex; each becomes a watched tensor of the same dtype.

        Returns
        -------
        (float, list of ndarray)
            The value and one gradient per input (zeros where the value does not
            depend on it).
        """
        raise NotImplementedError

    # -- networks and models --------------------------------------------------------------

    def run_network(self, network: Any, diffraction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``network(diffraction)`` without gradients: amplitude and phase heads as numpy."""
        raise NotImplementedError

    def parameters(self, network: Any) -> list[tuple[int, str]]:
        """``(number of elements, dtype name)`` of each native trainable parameter."""
        raise NotImplementedError

    def native_kernel(self, network: Any, canonical_name: str) -> np.ndarray:
        """The convolution kernel ``canonical_name`` in the framework's own layout."""
        raise NotImplementedError

    def model_loss(self, model: Any, diffraction: np.ndarray, offsets: np.ndarray,
                   truth: np.ndarray | None = None) -> float:
        """``model.loss`` of one batch (the framework-tensor training entry point)."""
        return float(self.numpy(model.loss(self.tensor(diffraction), self.tensor(offsets),
                                           None if truth is None else self.tensor(truth))))

    def model_heads(self, model: Any, diffraction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's network output (amplitude, phase) for ``diffraction``."""
        raise NotImplementedError

    def training_heads(self, model: Any, diffraction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network output as the training loop computes it (bfloat16 at "bf16-mixed")."""
        raise NotImplementedError

    def training_loss(self, model: Any, diffraction: np.ndarray, offsets: np.ndarray) -> float:
        """The loss of one batch as the training loop computes it (bfloat16 network at "bf16-mixed")."""
        raise NotImplementedError

    def trainable_scalars(self, model: Any) -> int:
        """Number of real numbers the model trains (a complex number counts twice)."""
        raise NotImplementedError

    def has_gpu(self) -> bool:
        raise NotImplementedError


class TensorFlow(Framework):
    name = "tf"
    kernel_layout = (0, 1, 2, 3)  # TensorFlow keeps HWIO
    cpu_device = "/CPU:0"
    gpu_device = "/GPU:0"

    def __init__(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.tf = pytest.importorskip("tensorflow")
        self.layers = pytest.importorskip("ptychopinn_tf.layers")
        self.network = pytest.importorskip("ptychopinn_tf.network")
        self.model = pytest.importorskip("ptychopinn_tf.model")

    def tensor(self, values: Any) -> Any:
        return self.tf.constant(np.array(values, copy=True))

    def numpy(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)

    def abs(self, tensor: Any) -> Any:
        return self.tf.abs(tensor)

    def sum(self, tensor: Any) -> Any:
        return self.tf.reduce_sum(tensor)

    def stop_gradient(self, tensor: Any) -> Any:
        return self.tf.stop_gradient(tensor)

    def value_and_gradients(self, function, *inputs):
        tensors = [self.tensor(values) for values in inputs]
        with self.tf.GradientTape() as tape:
            for tensor in tensors:
                tape.watch(tensor)
            value = function(*tensors)
        gradients = tape.gradient(value, tensors)
        return float(value), [np.zeros_like(values) if gradient is None else gradient.numpy()
                              for values, gradient in zip(inputs, gradients)]

    def run_network(self, network, diffraction):
        amplitude, phase = network(self.tf.constant(diffraction))
        return amplitude.numpy(), phase.numpy()

    def parameters(self, network):
        return [(variable.shape.num_elements(), variable.dtype.name) for variable in network.trainable_variables]

    def native_kernel(self, network, canonical_name):
        return network.variables_by_name[canonical_name].numpy()

    def model_heads(self, model, diffraction):
        return self.run_network(model.network, diffraction)

    def training_heads(self, model, diffraction):
        amplitude, phase = model.network(self.tf.constant(diffraction), model.training_network_dtype)
        return amplitude.numpy(), phase.numpy()

    def training_loss(self, model, diffraction, offsets):
        return float(model.training_loss(self.tf.constant(diffraction), self.tf.constant(offsets)))

    def trainable_scalars(self, model):
        return sum(variable.shape.num_elements() * (2 if variable.dtype.is_complex else 1)
                   for variable in model.trainable_variables)

    def has_gpu(self) -> bool:
        return bool(self.tf.config.list_logical_devices("GPU"))


class Torch(Framework):
    name = "torch"
    kernel_layout = (3, 2, 0, 1)  # HWIO -> OIHW

    def __init__(self) -> None:
        self.torch = pytest.importorskip("torch")
        self.layers = pytest.importorskip("ptychopinn_torch.layers")
        self.network = pytest.importorskip("ptychopinn_torch.network")
        self.model = pytest.importorskip("ptychopinn_torch.model")
        self.cpu_device = self.torch.device("cpu")
        self.gpu_device = self.torch.device("cuda")

    def tensor(self, values: Any) -> Any:
        return self.torch.from_numpy(np.array(values, copy=True))

    def numpy(self, tensor: Any) -> np.ndarray:
        return tensor.detach().cpu().numpy() if isinstance(tensor, self.torch.Tensor) else np.asarray(tensor)

    def abs(self, tensor: Any) -> Any:
        return self.torch.abs(tensor)

    def sum(self, tensor: Any) -> Any:
        return self.torch.sum(tensor)

    def stop_gradient(self, tensor: Any) -> Any:
        return tensor.detach()

    def value_and_gradients(self, function, *inputs):
        tensors = [self.tensor(values).requires_grad_(True) for values in inputs]
        value = function(*tensors)
        value.backward()
        return float(value.detach()), [np.zeros_like(values) if tensor.grad is None else tensor.grad.numpy()
                                       for values, tensor in zip(inputs, tensors)]

    def run_network(self, network, diffraction):
        with self.torch.no_grad():
            amplitude, phase = network(self.torch.from_numpy(np.array(diffraction, copy=True)))
        return amplitude.numpy(), phase.numpy()

    def parameters(self, network):
        return [(parameter.numel(), str(parameter.dtype).removeprefix("torch.")) for parameter in network.parameters()]

    def native_kernel(self, network, canonical_name):
        module_name = canonical_name.removesuffix(".kernel")
        return network.get_submodule(module_name).weight.detach().numpy()

    def model_heads(self, model, diffraction):
        return self.run_network(model.module.network, diffraction)

    def _training_autocast(self, model):
        """Lightning's autocast for the model's precision (disabled unless "bf16-mixed")."""
        mixed = model.config.execution.precision == "bf16-mixed"
        return self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=mixed)

    def training_heads(self, model, diffraction):
        with self.torch.no_grad(), self._training_autocast(model):
            amplitude, phase = model.module.heads(self.torch.from_numpy(np.array(diffraction, copy=True)))
        return amplitude.numpy(), phase.numpy()

    def training_loss(self, model, diffraction, offsets):
        with self.torch.no_grad(), self._training_autocast(model):
            return float(model.loss(self.tensor(diffraction), self.tensor(offsets)))

    def trainable_scalars(self, model):
        return sum(parameter.numel() * (2 if parameter.is_complex() else 1)
                   for parameter in model.module.parameters() if parameter.requires_grad)

    def has_gpu(self) -> bool:
        return bool(self.torch.cuda.is_available())


_ADAPTERS: dict[str, type[Framework]] = {"tf": TensorFlow, "torch": Torch}
_LOADED: dict[str, Framework] = {}


def load_framework(name: str) -> Framework:
    """The adapter of framework ``name`` (skips the calling test when it is not installed)."""
    if name not in _LOADED:
        _LOADED[name] = _ADAPTERS[name]()
    return _LOADED[name]

