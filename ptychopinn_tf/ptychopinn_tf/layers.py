"""The physics of docs/physics.md as differentiable TensorFlow functions.

Same names, argument order and equations as the numpy reference in
:mod:`ptychopinn_core.physics` (and as ``ptychopinn_torch.layers``); the tests compare
each function with the reference to float32 rounding (relative error <= 1e-6).

Conventions
-----------
- Batch-first, images in the last two axes ``(..., rows, cols)``; patches
  ``(B, C, N, N)``; shifts and offsets ``(x, y)`` pixels (x = column, y = row).
- Complex tensors are ``complex64``, real ones ``float32``.
- Sampling coordinates are formed in float64, as in the reference, and only the
  fractional weights are rounded to float32: the bilinear weights are then the same
  numbers as numpy's, whatever the size of the coordinates.
- Translation is the explicit gather of :func:`sample_separable` (floor, fractional
  weights, four corners, zero outside through in-bounds flags); no ``tf.image``
  resampling, whose pixel-centre and edge rules differ.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ptychopinn_core.physics.losses import POISSON_EPS
from ptychopinn_core.physics.overlap import MERGE_MASK_THRESHOLD, PROBE_WEIGHT_FLOOR

__all__ = [
    "sample_separable",
    "translate",
    "pad_to_full",
    "central_window_mask",
    "merge_patches",
    "relative_offsets",
    "probe_weights",
    "enforce_overlap",
    "illuminate",
    "far_field",
    "poisson_nll",
    "amplitude_mae",
    "supervised_mae",
    "complex_combine",
]

#: dtype of sampling coordinates (rows/cols before floor), as in the numpy reference.
COORDINATE_DTYPE = tf.float64


def _real_dtype(dtype: tf.DType) -> tf.DType:
    """float32 for complex64/float32, float64 for complex128/float64."""
    return dtype.real_dtype if dtype.is_complex else dtype


def _scale(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """``weights * values`` for real weights and real or complex values.

    For complex values this is ``complex(weights, 0) * values``, which equals scaling the
    real and imaginary parts separately (what numpy does for a real * complex product).
    """
    if values.dtype.is_complex:
        weights = tf.complex(weights, tf.zeros_like(weights))
    return weights * values


def _corners(coords: tf.Tensor, size: int, real_dtype: tf.DType):
    """Gather indices, weights and in-bounds flags of the two neighbours of each coordinate.

    ``lower = floor(u)``, ``frac = u - lower`` (rounded to ``real_dtype`` after the
    subtraction), weights ``1 - frac`` and ``frac`` times the in-bounds flag of each
    neighbour; indices clipped into the image so the gather is always valid.
    """
    lower = tf.floor(coords)
    frac = tf.cast(coords - lower, real_dtype)
    lower_index = tf.cast(lower, tf.int32)
    upper_index = lower_index + 1
    in_lower = tf.cast((lower_index >= 0) & (lower_index < size), real_dtype)
    in_upper = tf.cast((upper_index >= 0) & (upper_index < size), real_dtype)
    return (
        (tf.clip_by_value(lower_index, 0, size - 1), (1 - frac) * in_lower),
        (tf.clip_by_value(upper_index, 0, size - 1), frac * in_upper),
    )


def sample_separable(images: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
    """Bilinear samples of images on separable grids, zero outside the image.

    Equation (per batch element ``b``, ``r0 = floor(u)``, ``fr = u - r0``, likewise ``c0``,
    ``fc`` for the column coordinate ``v``)::

        out[b, i, j] = sum over the four corners (r, c) of w_r * w_c * I~[b, r, c]
        w_{r0} = 1 - fr, w_{r0+1} = fr, w_{c0} = 1 - fc, w_{c0+1} = fc
        I~[b, r, c] = I[b, r, c] inside the image, 0 outside

    Corners are accumulated in the reference's order ((r0, c0), (r0, c0+1), (r0+1, c0),
    (r0+1, c0+1)).

    Parameters
    ----------
    images : tf.Tensor, shape (B, H, W) or (H, W), float32 or complex64
        Images to sample; a 2-D image is shared by every grid of the batch.
    rows : tf.Tensor, shape (B, Ho), float (float64 recommended)
        Fractional row coordinate of each output row (0 = first input row).
    cols : tf.Tensor, shape (B, Wo), float
        Fractional column coordinate of each output column.

    Returns
    -------
    tf.Tensor, shape (B, Ho, Wo), dtype of ``images``
    """
    images = tf.convert_to_tensor(images)
    rows = tf.cast(rows, COORDINATE_DTYPE)
    cols = tf.cast(cols, COORDINATE_DTYPE)
    height, width = images.shape[-2], images.shape[-1]
    real_dtype = _real_dtype(images.dtype)
    out = None
    for row_index, row_weight in _corners(rows, height, real_dtype):
        if images.shape.rank == 2:
            picked_rows = tf.gather(images, row_index, axis=0)  # (B, Ho, W)
        else:
            picked_rows = tf.gather(images, row_index, axis=1, batch_dims=1)  # (B, Ho, W)
        for col_index, col_weight in _corners(cols, width, real_dtype):
            values = tf.gather(picked_rows, col_index, axis=2, batch_dims=1)  # (B, Ho, Wo)
            term = _scale(values, row_weight[:, :, None] * col_weight[:, None, :])
            out = term if out is None else out + term
    return out


def translate(images: tf.Tensor, shifts_xy: tf.Tensor) -> tf.Tensor:
    """Translate each image by its own sub-pixel shift, bilinear, zero fill.

    Equation: ``out[..., r, c] = I(r - dy, c - dx)``: content moves by ``+dx`` columns
    and ``+dy`` rows (:func:`sample_separable` rule).

    Parameters
    ----------
    images : tf.Tensor, shape (..., H, W), float32 or complex64
    shifts_xy : tf.Tensor, shape (..., 2), float
        ``(dx, dy)`` per image in pixels; the leading axes match ``images``.

    Returns
    -------
    tf.Tensor, shape (..., H, W), dtype of ``images``
    """
    images = tf.convert_to_tensor(images)
    shifts = tf.cast(shifts_xy, COORDINATE_DTYPE)
    expected = images.shape[:-2].concatenate([2])
    if not shifts.shape.is_compatible_with(expected):  # in a trace, unknown axes match anything
        raise ValueError(
            f"invalid shifts shape: expected {tuple(expected)} for images of shape "
            f"{tuple(images.shape)}, received shifts_xy.shape={tuple(shifts.shape)}"
        )
    height, width = images.shape[-2], images.shape[-1]
    flat = tf.reshape(images, [-1, height, width])
    shifts = tf.reshape(shifts, [-1, 2])
    rows = tf.range(height, dtype=COORDINATE_DTYPE)[None, :] - shifts[:, 1:2]
    cols = tf.range(width, dtype=COORDINATE_DTYPE)[None, :] - shifts[:, 0:1]
    return tf.reshape(sample_separable(flat, rows, cols), tf.shape(images))


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"invalid patch size: expected an int, received size={size!r}")
    if size < 4 or size % 4:
        raise ValueError(
            "invalid patch size: expected a positive multiple of 4 (the central window N/2 "
            f"is padded by N/4 on each side), received size={size}"
        )
    return int(size)


def pad_to_full(head: tf.Tensor, size: int) -> tf.Tensor:
    """Zero-pad network head output from ``N/2 x N/2`` to ``N x N`` (``N/4`` per side).

    Parameters
    ----------
    head : tf.Tensor, shape (..., N/2, N/2)
    size : int
        ``N``, a multiple of 4.

    Returns
    -------
    tf.Tensor, shape (..., N, N), dtype of ``head``
    """
    size = _check_size(size)
    head = tf.convert_to_tensor(head)
    half, quarter = size // 2, size // 4
    if head.shape.rank is None or head.shape.rank < 2 or tuple(head.shape[-2:]) != (half, half):
        raise ValueError(
            f"invalid head shape: expected (..., {half}, {half}) for size={size}, received head.shape={head.shape}"
        )
    paddings = [[0, 0]] * (head.shape.rank - 2) + [[quarter, quarter], [quarter, quarter]]
    return tf.pad(head, paddings)


def central_window_mask(size: int, dtype: tf.DType = tf.float32) -> tf.Tensor:
    """Ones in the central ``N/2 x N/2`` window, zeros elsewhere.

    ``w[r, c] = 1`` for ``N//4 <= r, c < N//4 + N//2``: exactly the pixels
    :func:`pad_to_full` fills.

    Parameters
    ----------
    size : int
        ``N``, a multiple of 4.
    dtype : tf.DType
        Real dtype of the mask (default float32).

    Returns
    -------
    tf.Tensor, shape (N, N)
    """
    size = _check_size(size)
    mask = np.zeros((size, size), dtype=np.dtype(tf.as_dtype(dtype).as_numpy_dtype))
    start, stop = size // 4, size // 4 + size // 2
    mask[start:stop, start:stop] = 1
    return tf.constant(mask)


def probe_weights(probe: tf.Tensor) -> tf.Tensor:
    """Merge weights that follow the illumination, ``w * max(|P| / max(w |P|), floor)`` (docs/physics.md §4).

    A constant of the merge (``stop_gradient``): no gradient reaches a trainable probe
    through the merge weights.

    Parameters
    ----------
    probe : tf.Tensor, complex, shape (N, N)

    Returns
    -------
    tf.Tensor, real, shape (N, N)
    """
    probe = tf.stop_gradient(tf.convert_to_tensor(probe))
    real_dtype = _real_dtype(probe.dtype)
    window = central_window_mask(probe.shape[-1], real_dtype)
    weights = tf.abs(probe) * window
    floor = tf.constant(PROBE_WEIGHT_FLOOR, dtype=real_dtype)
    return tf.maximum(weights / tf.reduce_max(weights), floor) * window


def _merge_weights(weights: tf.Tensor | None, patches: tf.Tensor) -> tf.Tensor:
    """The central window by default, else ``weights``, in the patches' real dtype."""
    real_dtype = _real_dtype(patches.dtype)
    if weights is None:
        return central_window_mask(patches.shape[-1], real_dtype)
    weights = tf.convert_to_tensor(weights)
    if tuple(weights.shape) != tuple(patches.shape[-2:]):
        raise ValueError(
            f"invalid merge weights: expected shape {tuple(patches.shape[-2:])}, received {tuple(weights.shape)}"
        )
    return tf.cast(weights, real_dtype)


def _check_group_tensors(patches: tf.Tensor, offsets_xy: tf.Tensor) -> None:
    if patches.shape.rank != 4 or patches.shape[-1] != patches.shape[-2]:
        raise ValueError(f"invalid patches shape: expected (B, C, N, N), received patches.shape={patches.shape}")
    if offsets_xy.shape.rank != 3 or offsets_xy.shape[-1] != 2 or offsets_xy.shape[1] != patches.shape[1]:
        raise ValueError(
            f"invalid offsets shape: expected (B, {patches.shape[1]}, 2) for patches of shape "
            f"{patches.shape}, received offsets_xy.shape={offsets_xy.shape}"
        )


def merge_patches(patches: tf.Tensor, offsets_xy: tf.Tensor, weights: tf.Tensor | None = None) -> tf.Tensor:
    """Average a group's windowed patches in the group frame.

    Equation (``T_d`` = :func:`translate` by ``d``, ``w`` = :func:`central_window_mask`,
    ``t = MERGE_MASK_THRESHOLD = 1e-3``)::

        S = sum_c T_{+offset_c}(w * O_c)
        W = sum_c T_{+offset_c}(w)
        merged = where(W > t, S / maximum(W, t), 0)

    The division by ``maximum(W, t)`` keeps the untaken branch of ``where`` finite, so
    gradients stay finite where no window reaches.

    Parameters
    ----------
    patches : tf.Tensor, shape (B, C, N, N), complex64 or float32
    offsets_xy : tf.Tensor, shape (B, C, 2), float
        ``offset_c = position_c - centre`` in pixels, ``(x, y)``.
    weights : tf.Tensor, real, shape (N, N), optional
        Merge weights ``w`` (default: the central window; or :func:`probe_weights`).

    Returns
    -------
    tf.Tensor, shape (B, N, N), dtype of ``patches``
    """
    patches = tf.convert_to_tensor(patches)
    offsets_xy = tf.convert_to_tensor(offsets_xy)
    _check_group_tensors(patches, offsets_xy)
    real_dtype = _real_dtype(patches.dtype)
    window = _merge_weights(weights, patches)
    windows = tf.broadcast_to(window, tf.shape(patches))
    coverage = tf.reduce_sum(translate(windows, offsets_xy), axis=1)
    summed = tf.reduce_sum(translate(_scale(patches, window), offsets_xy), axis=1)
    threshold = tf.constant(MERGE_MASK_THRESHOLD, dtype=real_dtype)
    safe_weights = tf.maximum(coverage, threshold)
    if summed.dtype.is_complex:
        quotient = tf.complex(tf.math.real(summed) / safe_weights, tf.math.imag(summed) / safe_weights)
    else:
        quotient = summed / safe_weights
    return tf.where(coverage > threshold, quotient, tf.zeros_like(quotient))


def relative_offsets(offsets_xy: tf.Tensor) -> tf.Tensor:
    """``rel[b, c, k] = offset_k - offset_c``: channel ``k`` seen from channel ``c``'s frame."""
    return offsets_xy[:, None, :, :] - offsets_xy[:, :, None, :]


def enforce_overlap(patches: tf.Tensor, offsets_xy: tf.Tensor, weights: tf.Tensor | None = None) -> tf.Tensor:
    """Overlap constraint: each channel becomes the group's average seen from its own frame.

    Equation: ``O'_c = merge_patches(O, relative_offsets(offsets)[:, c])``, i.e.
    ``S_c = sum_k T_{position_k - position_c}(w * O_k)``, ``W_c`` the same sum of windows,
    ``O'_c = where(W_c > t, S_c / maximum(W_c, t), 0)``: a channel's own prediction enters
    unshifted (docs/physics.md §4).

    Parameters
    ----------
    patches : tf.Tensor, shape (B, C, N, N)
    offsets_xy : tf.Tensor, shape (B, C, 2)
    weights : tf.Tensor, real, shape (N, N), optional
        Merge weights (default: the central window).

    Returns
    -------
    tf.Tensor, shape (B, C, N, N)
        ``patches`` itself when ``C == 1`` (no grouping, nothing to enforce).
    """
    patches = tf.convert_to_tensor(patches)
    offsets_xy = tf.convert_to_tensor(offsets_xy)
    _check_group_tensors(patches, offsets_xy)
    channels, size = patches.shape[1], patches.shape[-1]
    if channels == 1:
        return patches
    batch = tf.shape(patches)[0]
    stacked = tf.reshape(tf.broadcast_to(patches[:, None], [batch, channels, channels, size, size]),
                         [-1, channels, size, size])
    relative = tf.reshape(relative_offsets(tf.cast(offsets_xy, COORDINATE_DTYPE)), [-1, channels, 2])
    return tf.reshape(merge_patches(stacked, relative, weights), [batch, channels, size, size])


def illuminate(patches: tf.Tensor, probe: tf.Tensor) -> tf.Tensor:
    """Exit waves ``psi = O * P``, the probe broadcast over the leading axes.

    Parameters
    ----------
    patches : tf.Tensor, complex64, shape (..., N, N)
    probe : tf.Tensor, complex64, shape (N, N)
    """
    patches = tf.convert_to_tensor(patches)
    return patches * tf.cast(probe, patches.dtype)


def far_field(psi: tf.Tensor) -> tf.Tensor:
    """Far-field wave ``F = fftshift(fft2(psi)) / N``, zero frequency at pixel ``N // 2``.

    Unitary (Parseval: ``sum |F|**2 == sum |psi|**2``); FFT and shift act on the last
    two axes.

    Parameters
    ----------
    psi : tf.Tensor, complex64, shape (..., N, N)

    Returns
    -------
    tf.Tensor, complex64, shape (..., N, N)
    """
    psi = tf.convert_to_tensor(psi)
    size = psi.shape[-1]
    spectrum = tf.signal.fftshift(tf.signal.fft2d(psi), axes=(-2, -1))
    divisor = tf.constant(size, dtype=_real_dtype(psi.dtype))
    return tf.complex(tf.math.real(spectrum) / divisor, tf.math.imag(spectrum) / divisor)


def poisson_nll(predicted_intensity: tf.Tensor, observed_intensity: tf.Tensor) -> tf.Tensor:
    """Poisson negative log-likelihood per pixel, plain mean over every element.

    Equation: ``mean(I_hat - y * log(I_hat + eps))``, ``eps = POISSON_EPS = 1e-6``
    (the constant ``lgamma(y + 1)`` is dropped, so the loss can be negative).

    Parameters
    ----------
    predicted_intensity : tf.Tensor, float32, any shape
        ``I_hat = (s * A_hat)**2``, photons.
    observed_intensity : tf.Tensor, float32, same shape
        ``y = (s * X_n)**2``, photons.

    Returns
    -------
    tf.Tensor, float32, shape ()
    """
    predicted = tf.convert_to_tensor(predicted_intensity)
    observed = tf.cast(observed_intensity, predicted.dtype)
    eps = tf.constant(POISSON_EPS, dtype=predicted.dtype)
    return tf.reduce_mean(predicted - observed * tf.math.log(predicted + eps))


def amplitude_mae(predicted_amplitude: tf.Tensor, observed_amplitude: tf.Tensor, intensity_scale) -> tf.Tensor:
    """Mean absolute error of scaled amplitudes, ``mean(|s * A_hat - s * X_n|)``.

    Parameters
    ----------
    predicted_amplitude : tf.Tensor, float32, any shape
        ``A_hat``.
    observed_amplitude : tf.Tensor, float32, same shape
        ``X_n``.
    intensity_scale : float or tf.Tensor, shape ()
        ``s``.

    Returns
    -------
    tf.Tensor, float32, shape ()
    """
    predicted = tf.convert_to_tensor(predicted_amplitude)
    observed = tf.cast(observed_amplitude, predicted.dtype)
    scale = tf.cast(intensity_scale, predicted.dtype)
    return tf.reduce_mean(tf.abs(scale * predicted - scale * observed))


def _safe_angle(values: tf.Tensor) -> tf.Tensor:
    """``angle(z)`` with ``angle(0) = 0`` and a zero (not NaN) gradient at ``z = 0``.

    ``atan2``'s gradient is ``(x, -y) / (x**2 + y**2)``, NaN at the origin; evaluating it
    at ``1 + 0i`` there (and discarding the value) keeps it finite.
    """
    real, imag = tf.math.real(values), tf.math.imag(values)
    at_origin = tf.logical_and(tf.equal(real, 0), tf.equal(imag, 0))
    safe_real = tf.where(at_origin, tf.ones_like(real), real)
    safe_imag = tf.where(at_origin, tf.zeros_like(imag), imag)
    return tf.where(at_origin, tf.zeros_like(real), tf.math.atan2(safe_imag, safe_real))


def supervised_mae(pred_patches: tf.Tensor, true_patches: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Amplitude and phase MAE of predicted object patches against ground truth.

    Equations::

        amplitude_mae = mean(| |O_hat| - |Y| |)
        phase_mae     = mean(| angle(O_hat * conj(Y)) |)      wrapped to (-pi, pi]

    Where either patch is 0 the phase error is ``angle(0) = 0`` (with a zero gradient).

    Parameters
    ----------
    pred_patches : tf.Tensor, complex64, any shape
    true_patches : tf.Tensor, complex64, same shape

    Returns
    -------
    (tf.Tensor, tf.Tensor), float32 scalars
        ``(amplitude_mae, phase_mae)``, the phase in radians.
    """
    predicted = tf.convert_to_tensor(pred_patches)
    truth = tf.cast(true_patches, predicted.dtype)
    amplitude_error = tf.reduce_mean(tf.abs(tf.abs(predicted) - tf.abs(truth)))
    phase_error = tf.reduce_mean(tf.abs(_safe_angle(predicted * tf.math.conj(truth))))
    return amplitude_error, phase_error


def complex_combine(amplitude: tf.Tensor, phase: tf.Tensor) -> tf.Tensor:
    """``A * exp(i * phi) = A cos(phi) + i A sin(phi)``, complex64 (same shape)."""
    return tf.complex(amplitude * tf.math.cos(phase), amplitude * tf.math.sin(phase))

