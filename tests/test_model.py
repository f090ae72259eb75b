"""Each backend's ``PinnModel``: its loss is the core's loss of its forward pass, its
gradients are the derivative of that loss, and its probe/scale/state bookkeeping.

Every test runs once per installed framework (the ``framework`` fixture), on one small
simulated scan (N = 16, gridsize 2, 16 positions; N = 32 for the unet, whose skips need
an up-block).
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from ptychopinn_core.config import Config, ExecutionConfig
from ptychopinn_core.model.inputs import overlap_weights, prepare_model_state
from ptychopinn_core.model.parameters import initial_weights, parameter_specs
from ptychopinn_core.parity.tolerances import TOLERANCES
from ptychopinn_core.physics import (
    circular_probe_mask,
    enforce_overlap,
    far_field,
    illuminate,
    pad_to_full,
    pinn_loss,
    poisson_nll,
    supervised_mae,
)
from ptychopinn_core.simulation.scan import make_demo_scan
from ptychopinn_core.testing import bitwise_equal, relative_error
from ptychopinn_core.training.data import prepare_training_data

#: float32 loss of a float32 forward pass against the float64 reference of the same amplitudes.
LOSS_TOLERANCE = TOLERANCES["model_loss"].relative
N_POSITIONS = 16


def make_config(**sections) -> Config:
    values = {
        "model": {"pattern_size": 16, "gridsize": 2, "n_filters_scale": 1},
        "training": {"batch_size": 4, "validation_fraction": 0.25, "epochs": 1},
        "execution": {"device": "cpu"},
    }
    for section, settings in sections.items():
        values.setdefault(section, {}).update(settings)
    return Config.from_dict(values)


def setup(framework, config: Config):
    """A fresh model of ``config`` at its initial weights, its data and every group id."""
    scan = make_demo_scan(N_POSITIONS, size=config.model.pattern_size, seed=7)
    data = prepare_training_data(scan, config)
    state = prepare_model_state(scan, config)
    model = framework.model.PinnModel(config, state, initial_weights(parameter_specs(config.model),
                                                                     config.training.seed))
    ids = np.arange(data.groups.n_groups)
    return model, data, ids


def test_pinn_loss_is_the_core_loss_of_the_forward_pass(framework) -> None:
    config = make_config(training={"nll_weight": 1.0, "mae_weight": 0.5})
    model, data, ids = setup(framework, config)
    diffraction, offsets = data.gather(ids)
    amplitude = model.forward(diffraction, offsets).amplitude
    expected = pinn_loss(amplitude.astype(np.float64), diffraction.astype(np.float64),
                         model.state.intensity_scale, nll_weight=1.0, mae_weight=0.5)
    actual = framework.model_loss(model, diffraction, offsets)
    assert abs(actual - expected) <= LOSS_TOLERANCE * abs(expected)


@pytest.mark.parametrize("weights", ["probe", "window"])
def test_patches_are_the_core_overlap_constraint_of_the_heads(framework, weights: str) -> None:
    """Gridsize 2: the model's patches are physics.md §4 applied to its network output, with
    the merge weights of ``model.overlap_weights`` (the probe's |P| in the window, or the window)."""
    config = make_config(model={"overlap_weights": weights})
    model, data, ids = setup(framework, config)
    diffraction, offsets = data.gather(ids)
    amplitude, phase = (value.astype(np.float64) for value in framework.model_heads(model, diffraction))
    merge_weights = overlap_weights(config.model, model.state.probe.astype(np.complex128))
    assert (merge_weights is None) == (weights == "window")
    expected = enforce_overlap(pad_to_full(amplitude * np.exp(1j * phase), 16), offsets.astype(np.float64), merge_weights)
    patches = model.forward(diffraction, offsets).patches
    assert relative_error(patches, expected) <= TOLERANCES["enforce_overlap"].relative * 10
    other = enforce_overlap(pad_to_full(amplitude * np.exp(1j * phase), 16), offsets.astype(np.float64),
                            None if weights == "probe" else overlap_weights(config.model.model_copy(
                                update={"overlap_weights": "probe"}), model.state.probe))
    assert relative_error(patches, other) > 1e-3, "the two merge weights must differ on this case"


def test_trainable_scale_scales_the_prediction_only(framework) -> None:
    """y = (s X_n)^2 with the fixed s; I_hat = (s_eff A_hat)^2, s_eff = s exp(log_s)."""
    config = make_config(model={"intensity_scale_trainable": True}, training={"mae_weight": 0.25})
    model, data, ids = setup(framework, config)
    weights = model.get_weights()
    weights["log_intensity_scale"] = np.array(0.1, dtype=np.float32)
    model.set_weights(weights)
    diffraction, offsets = data.gather(ids)
    amplitude = model.forward(diffraction, offsets).amplitude.astype(np.float64)
    s = model.state.intensity_scale
    s_eff = s * math.exp(float(np.float32(0.1)))
    observed = s * diffraction.astype(np.float64)
    expected = poisson_nll((s_eff * amplitude) ** 2, observed**2) + 0.25 * np.mean(np.abs(s_eff * amplitude - observed))
    actual = framework.model_loss(model, diffraction, offsets)
    assert abs(actual - expected) <= LOSS_TOLERANCE * abs(expected)
    assert model.state.intensity_scale == s, "the state keeps s; the correction lives in the weights"


def test_supervised_loss_compares_the_central_window_of_the_network_output(framework) -> None:
    config = make_config(training={"mode": "supervised"})
    model, data, ids = setup(framework, config)
    diffraction, offsets = data.gather(ids)
    truth = data.gather_truth(ids)
    amplitude, phase = (value.astype(np.float64) for value in framework.model_heads(model, diffraction))
    window = slice(4, 12)  # N = 16: rows/cols N/4 .. 3N/4
    expected = sum(supervised_mae(amplitude * np.exp(1j * phase), truth[..., window, window].astype(np.complex128)))
    actual = framework.model_loss(model, diffraction, offsets, truth)
    assert abs(actual - expected) <= LOSS_TOLERANCE * abs(expected)
    with pytest.raises(ValueError, match="truth"):
        framework.model_loss(model, diffraction, offsets)


@pytest.mark.parametrize("mode", ["pinn", "supervised"])
def test_gradients_are_the_derivative_of_the_loss(framework, mode: str) -> None:
    """Central difference of the loss along the normalised gradient equals |gradient|."""
    config = make_config(training={"mode": mode})
    model, data, ids = setup(framework, config)
    diffraction, offsets = data.gather(ids)
    truth = data.gather_truth(ids) if mode == "supervised" else None
    loss, gradients = model.loss_and_gradients(diffraction, offsets, truth)
    specs = parameter_specs(config.model)
    assert list(gradients) == [spec.name for spec in specs]
    assert all(gradients[spec.name].shape == spec.shape for spec in specs)
    assert all(np.all(np.isfinite(value)) for value in gradients.values())
    norm = math.sqrt(sum(float(np.sum(value.astype(np.float64) ** 2)) for value in gradients.values()))
    weights = model.get_weights()
    # A step that changes the loss by ~1e-3 of its size: far above float32 rounding of
    # the loss, small enough for the curvature term.
    step = 1e-3 * abs(loss) / norm

    def loss_at(sign: float) -> float:
        model.set_weights({name: (weights[name] + sign * step * gradients[name] / norm).astype(np.float32)
                           for name in weights})
        return model.loss_and_gradients(diffraction, offsets, truth)[0]

    slope = (loss_at(+1) - loss_at(-1)) / (2 * step)
    assert slope == pytest.approx(norm, rel=0.02)


def test_unet_trains_through_its_skips(framework) -> None:
    """N = 32 unet: the heads read [upsampled decoder (32 channels), encoder.1 (64)];
    gradient reaches the encoder rows of the head kernels, and the backend's own training
    (one epoch: 3 Adam steps) lowers the loss."""
    config = make_config(model={"pattern_size": 32, "architecture": "unet"})
    model, data, ids = setup(framework, config)
    diffraction, offsets = data.gather(ids)
    before, gradients = model.loss_and_gradients(diffraction, offsets)
    for head in ("head_amplitude", "head_phase"):
        assert gradients[f"{head}.kernel"].shape[2] == 32 + 64
        assert np.any(gradients[f"{head}.kernel"][:, :, 32:, :]), f"no gradient through {head}'s skip"
    train_model = importlib.import_module(f"{framework.model.__package__}.training").train_model
    history = train_model(model, data, config, lambda event: None)
    assert len(history.epochs) == 1
    after, _ = model.loss_and_gradients(diffraction, offsets)
    assert after < before, f"training did not lower the unet's loss: {before!r} -> {after!r}"


def test_space_to_depth_trains_through_its_stem(framework) -> None:
    """N = 32 space_to_depth: encoder.0.conv0 reads the stem's 4 channels at 16 x 16 and
    gets a gradient in every one of them; the backend's own training lowers the loss."""
    config = make_config(model={"pattern_size": 32, "architecture": "space_to_depth"})
    model, data, ids = setup(framework, config)
    diffraction, offsets = data.gather(ids)
    before, gradients = model.loss_and_gradients(diffraction, offsets)
    kernel = gradients["encoder.0.conv0.kernel"]
    assert kernel.shape[2] == 4
    assert all(np.any(kernel[:, :, channel, :]) for channel in range(4)), "a stem channel gets no gradient"
    train_model = importlib.import_module(f"{framework.model.__package__}.training").train_model
    train_model(model, data, config, lambda event: None)
    after, _ = model.loss_and_gradients(diffraction, offsets)
    assert after < before, f"training did not lower the space_to_depth loss: {before!r} -> {after!r}"


def test_forward_amplitude_is_the_physics_of_its_patches(framework) -> None:
    model, data, ids = setup(framework, make_config())
    diffraction, offsets = data.gather(ids)
    result = model.forward(diffraction, offsets)
    expected = np.abs(far_field(illuminate(result.patches.astype(np.complex128),
                                           model.state.probe.astype(np.complex128))))
    assert relative_error(result.amplitude, expected) <= TOLERANCES["forward_amplitude"].relative
    predicted = model.predict(diffraction, offsets)
    assert bitwise_equal(predicted, result.patches) or relative_error(predicted, result.patches) <= 1e-6


@pytest.mark.parametrize("group_network", ["shared", "joint"])
def test_prediction_in_slices_is_the_prediction_in_one_call(framework, monkeypatch, group_network: str) -> None:
    """``predict`` runs a chunk in slices (PyTorch on a CPU: ``inference_groups`` groups, the
    cache rule of ptychopinn_core.model.batching; TensorFlow: ``PREDICT_BATCH``, its graph
    being fastest in large batches). Slices of 3 cut the 16 groups into 6, the last one short, and every
    group's patches are those of the one-call forward pass. With the shared group network the
    network runs once per distinct pattern (ptychopinn_core.model.distinct): fewer passes
    than the groups' patterns, the same patches."""
    from ptychopinn_core.model import batching

    model, data, ids = setup(framework, make_config(model={"group_network": group_network}))
    diffraction, offsets = data.gather(ids)
    whole = model.forward(diffraction, offsets).patches
    inference = importlib.import_module(f"{framework.model.__package__}.inference")
    shared = group_network == "shared"
    sizes, passes = [], []
    if not hasattr(inference, "inference_groups"):  # TensorFlow: count the compiled function's calls
        monkeypatch.setattr(inference, "PREDICT_BATCH", 3)
        if shared:
            compiled = inference._distinct_functions

            def counted(model):
                heads, merge = compiled(model)
                return (lambda values: passes.append(values.shape[0]) or heads(values)), _counting(merge, sizes)

            monkeypatch.setattr(inference, "_distinct_functions", counted)
        else:
            compiled = inference._prediction_function
            monkeypatch.setattr(inference, "_prediction_function",
                                lambda model: _counting(compiled(model), sizes, passes))
    else:  # PyTorch: count the module's calls
        per_group = batching.widest_activation(model.config.model) * 4
        monkeypatch.setattr(batching, "ACTIVATION_BUDGET_BYTES", 3 * per_group)
        assert batching.inference_groups(model.config.model) == 3
        if shared:
            heads = model.module.heads
            monkeypatch.setattr(model.module, "heads", lambda values: passes.append(values.shape[0]) or heads(values))
            monkeypatch.setattr(model.module, "patches_from_heads", _counting(model.module.patches_from_heads, sizes))
        else:
            monkeypatch.setattr(model.module, "patches", _counting(model.module.patches, sizes, passes))
    assert len(ids) > 3 and len(ids) % 3 != 0
    sliced = model.predict(diffraction, offsets)
    assert sizes == [3] * (len(ids) // 3) + [len(ids) % 3]
    patterns = len(ids) * model.config.model.group_size
    if shared:  # each pattern of the chunk once
        assert 0 < sum(passes) < patterns
    else:
        assert sum(passes) == len(ids)  # the joint network: one pass a group
    assert sliced.shape == whole.shape
    assert relative_error(sliced, whole) <= 1e-6


def _counting(function, sizes: list, passes: list | None = None):
    """``function``, recording the groups of each call in ``sizes`` (its last argument, the
    offsets, has one row a group) and the network passes (its first argument's rows) in ``passes``."""
    def counted(*arguments):
        sizes.append(int(arguments[-1].shape[0]))
        if passes is not None:
            passes.append(int(arguments[0].shape[0]))
        return function(*arguments)
    return counted


def test_trainable_masked_probe_is_masked_and_trained(framework) -> None:
    config = make_config(model={"probe_trainable": True, "probe_mask": True})
    model, _, _ = setup(framework, config)
    mask = circular_probe_mask(16, dtype=np.float32)
    assert bitwise_equal(model.state.probe, (model.state.probe * mask).astype(np.complex64))
    # Every canonical parameter and the probe's 16 x 16 complex values are trained.
    network_scalars = sum(spec.size for spec in parameter_specs(config.model))
    assert framework.trainable_scalars(model) == network_scalars + 2 * 16 * 16


def test_a_new_state_probe_is_used_masked(framework) -> None:
    config = make_config(model={"probe_trainable": True, "probe_mask": True})
    model, _, _ = setup(framework, config)
    # A probe with content outside the mask is used (and reported) masked.
    bright = np.ones((16, 16), dtype=np.complex64)
    state = model.state
    model.state = type(state)(probe=bright, intensity_scale=state.intensity_scale,
                              amplitude_normalisation=state.amplitude_normalisation, probe_mask=True)
    np.testing.assert_array_equal(model.state.probe, circular_probe_mask(16, dtype=np.float32).astype(np.complex64))


def test_inputs_are_checked(framework) -> None:
    model, data, ids = setup(framework, make_config())
    diffraction, offsets = data.gather(ids)
    with pytest.raises(ValueError, match="diffraction shape"):
        model.predict(diffraction[:, :1], offsets)
    with pytest.raises(ValueError, match="offsets shape"):
        model.predict(diffraction, offsets[:2])


def test_device_selection(framework) -> None:
    select_device = framework.model.select_device
    assert select_device(ExecutionConfig(device="cpu")) == framework.cpu_device
    has_gpu = framework.has_gpu()
    assert select_device(ExecutionConfig(device="auto")) == (framework.gpu_device if has_gpu else framework.cpu_device)
    if not has_gpu:
        with pytest.raises(ValueError, match="GPU"):
            select_device(ExecutionConfig(device="gpu"))
