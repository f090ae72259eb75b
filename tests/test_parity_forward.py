"""Cross-backend parity, first level: the same bundle gives the same forward pass and loss.

Every pair of installed backends is compared (missing ones show as skipped). Tolerances
(design.md §7): forward pass (patches and predicted diffraction) <= 1e-5 relative, loss of
one batch <= 1e-4 relative. The full parity report (gradients, training curves,
reconstruction quality) is `ptychopinn parity` (not yet written).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import Config
from ptychopinn_core.model.parameters import initial_weights, parameter_specs
from ptychopinn_core.simulation.scan import make_demo_scan
from ptychopinn_core.testing import relative_error
from ptychopinn_core.training_data import prepare_model_state, prepare_training_data

FORWARD_TOLERANCE = 1e-5  # float32 rounding through ~10 layers and an FFT
LOSS_TOLERANCE = 1e-4  # a mean over B*C*N*N pixels, reduced in a different order

_REGISTRY = BackendRegistry.discover()
_PAIRS = list(itertools.combinations(sorted(e.name for e in _REGISTRY.entries() if e.ok and e.name != "numpyfake"), 2))


@pytest.fixture(scope="module")
def scan():
    return make_demo_scan(64, size=64, seed=3)


@pytest.mark.skipif(not _PAIRS, reason="needs two installed backends")
@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("pair", _PAIRS, ids=lambda pair: "-vs-".join(pair))
def test_same_weights_same_forward_and_loss(pair, gridsize, scan):
    config = Config().with_overrides({"model.gridsize": gridsize, "model.n_filters_scale": 1, "training.seed": 5})
    state = prepare_model_state(scan, config)
    data = prepare_training_data(scan, config)
    diffraction, offsets = data.gather(data.train_groups[:8])
    weights = initial_weights(parameter_specs(config.model), seed=5)

    results = {}
    for name in pair:
        model = _REGISTRY.get(name).build_model(config, state, weights)
        forward = model.forward(diffraction, offsets)
        loss, _ = model.loss_and_gradients(diffraction, offsets)
        results[name] = (forward.patches, forward.amplitude, loss)

    (patches_a, amplitude_a, loss_a), (patches_b, amplitude_b, loss_b) = results.values()
    errors = {
        "patches": relative_error(patches_b, patches_a),
        "amplitude": relative_error(amplitude_b, amplitude_a),
        "loss": abs(loss_b - loss_a) / abs(loss_a),
    }
    print(f"\n{pair} gridsize {gridsize}: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert errors["patches"] <= FORWARD_TOLERANCE
    assert errors["amplitude"] <= FORWARD_TOLERANCE
    assert errors["loss"] <= LOSS_TOLERANCE
    assert np.isfinite(loss_a)  # the NLL drops lgamma(y+1), so it may be negative
