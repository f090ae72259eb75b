"""The physics of docs/physics.md as differentiable PyTorch functions.

Same names, argument order and equations as the numpy reference in
:mod:`ptychopinn_core.physics` (and as ``ptychopinn_tf.layers``); the tests compare
each function with the reference to float32 rounding (relative error <= 1e-6).

Conventions
-----------
- Batch-first, images in the last two axes ``(..., rows, cols)``; patches
  ``(B, C, N, N)``; shifts and offsets ``(x, y)`` pixels (x = column, y = row).
- Complex tensors are ``complex64``, real ones ``float32``.
- Sampling coordinates are formed in float64, as in the reference, and only the
  fractional weights are rounded to float32: the bilinear weights are then the same
  numbers as numpy's, whatever the size of the coordinates.
- Sampling on arbitrary grids is the explicit gather of :func:`sample_separable`
  (floor, fractional weights, four corners, zero outside through in-bounds flags); no
  ``torch.nn.functional.grid_sample``, whose pixel-centre and edge rules differ.
- :func:`translate` (every image moved by its own shift, the overlap constraint's
  ``C^2`` moves per group) is the same rule as two batched matrix products,
  ``H_y @ I @ H_x^T`` with "hat" matrices ``H[o, s] = max(0, 1 - |s - u_o|)`` of the
  sample coordinates ``u``: each row holds the reference's two weights ``1 - f`` and
  ``f`` (formed in float64, rounded once), integer shifts give exact 0/1 rows, and a
  source pixel outside the image has no column (zero fill). On the CPU that is several
  times faster than the gathers, forward and backward (docs/benchmarks.md, "PyTorch").
- Every function works on the device of its inputs; constants (window mask, the
  divisor of the far field) are made on that device.
"""

from __future__ import annotations

import torch

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
COORDINATE_DTYPE = torch.float64


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for complex64/float32, float64 for complex128/float64."""
    return dtype.to_real() if dtype.is_complex else dtype


def _corners(coords: torch.Tensor, size: int, real_dtype: torch.dtype):
    """Gather indices and weights of the two neighbours of each coordinate.

    ``lower = floor(u)``, ``frac = u - lower`` (rounded to ``real_dtype`` after the
    subtraction), weights ``1 - frac`` and ``frac`` times the in-bounds flag of each
    neighbour; indices clipped into the image so the gather is always valid.
    """
    lower = torch.floor(coords)
    frac = (coords - lower).to(real_dtype)
    lower_index = lower.to(torch.int64)
    upper_index = lower_index + 1
    in_lower = ((lower_index >= 0) & (lower_index < size)).to(real_dtype)
    in_upper = ((upper_index >= 0) & (upper_index < size)).to(real_dtype)
    return (
        (lower_index.clamp(0, size - 1), (1 - frac) * in_lower),
        (upper_index.clamp(0, size - 1), frac * in_upper),
    )


def sample_separable(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of images on separable grids, zero outside the image.

    Equation (per batch element ``b``, ``r0 = floor(u)``, ``fr = u - r0``, likewise ``c0``,
    ``fc`` for the column coordinate ``v``)::

        out[b, i, j] = sum over the four corners (r, c) of w_r * w_c * I~[b, r, c]
        w_{r0} = 1 - fr, w_{r0+1} = fr, w_{c0} = 1 - fc, w_{c0+1} = fc
        I~[b, r, c] = I[b, r, c] inside the image, 0 outside

    Corners are accumulated in the reference's order ((r0, c0), (r0, c0+1), (r0+1, c0),
    (r0+1, c0+1)). Differentiable with respect to ``images`` (the gather's gradient is
    a scatter-add); the coordinates are not differentiated.

    Parameters
    ----------
    images : torch.Tensor, shape (B, H, W) or (H, W), float32 or complex64
        Images to sample; a 2-D image is shared by every grid of the batch.
    rows : torch.Tensor, shape (B, Ho), float (float64 recommended)
        Fractional row coordinate of each output row (0 = first input row).
    cols : torch.Tensor, shape (B, Wo), float
        Fractional column coordinate of each output column.

    Returns
    -------
    torch.Tensor, shape (B, Ho, Wo), dtype of ``images``
    """
    images = torch.as_tensor(images)
    rows = torch.as_tensor(rows, device=images.device).to(COORDINATE_DTYPE)
    cols = torch.as_tensor(cols, device=images.device).to(COORDINATE_DTYPE)
    height, width = images.shape[-2], images.shape[-1]
    batch, out_rows, out_cols = rows.shape[0], rows.shape[1], cols.shape[1]
    real_dtype = _real_dtype(images.dtype)
    out = None
    for row_index, row_weight in _corners(rows, height, real_dtype):
        if images.dim() == 2:
            picked_rows = images[row_index]  # (B, Ho, W)
        else:
            picked_rows = torch.gather(images, 1, row_index[:, :, None].expand(batch, out_rows, width))
        for col_index, col_weight in _corners(cols, width, real_dtype):
            values = torch.gather(picked_rows, 2, col_index[:, None, :].expand(batch, out_rows, out_cols))
            term = (row_weight[:, :, None] * col_weight[:, None, :]) * values
            out = term if out is None else out + term
    return out


def translate(images: torch.Tensor, shifts_xy: torch.Tensor) -> torch.Tensor:
    """Translate each image by its own sub-pixel shift, bilinear, zero fill.

    Equation: ``out[..., r, c] = I(r - dy, c - dx)``: content moves by ``+dx`` columns
    and ``+dy`` rows (:func:`sample_separable` rule).

    Parameters
    ----------
    images : torch.Tensor, shape (..., H, W), float32 or complex64
    shifts_xy : torch.Tensor, shape (..., 2), float
        ``(dx, dy)`` per image in pixels; the leading axes match ``images``.

    Returns
    -------
    torch.Tensor, shape (..., H, W), dtype of ``images``
    """
    images = torch.as_tensor(images)
    shifts = torch.as_tensor(shifts_xy, device=images.device).to(COORDINATE_DTYPE)
    lead = tuple(images.shape[:-2])
    if tuple(shifts.shape) != lead + (2,):
        raise ValueError(
            f"invalid shifts shape: expected {lead + (2,)} for images of shape "
            f"{tuple(images.shape)}, received shifts_xy.shape={tuple(shifts.shape)}"
        )
    height, width = images.shape[-2], images.shape[-1]
    matrices = _translation_matrices(shifts.reshape(-1, 2), height, width, _real_dtype(images.dtype))
    return _move(images.reshape(-1, height, width), matrices).reshape(images.shape)


def _translation_matrices(shifts: torch.Tensor, height: int, width: int,
                          real_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H_y (M, H, H), H_x^T (M, W, W))`` of shifts ``(M, 2)``: ``H_y @ I @ H_x^T`` moves
    image ``m`` by ``shifts[m]`` (:func:`translate`)."""
    rows = _hat_matrix(shifts[:, 1], height, real_dtype)  # (M, H, H): output row, source row
    cols = _hat_matrix(shifts[:, 0], width, real_dtype).transpose(1, 2)  # (M, W, W): source col, output col
    return rows, cols


def _move(flat: torch.Tensor, matrices: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``H_y @ I @ H_x^T`` for images ``(M, H, W)``, real or complex (the real and imaginary
    parts are moved as one real batch: the matrices are real)."""
    rows, cols = matrices
    if not flat.is_complex():
        return rows @ flat @ cols
    parts = torch.view_as_real(flat).movedim(-1, 1)  # (M, 2, H, W)
    moved = rows[:, None] @ parts @ cols[:, None]
    return torch.view_as_complex(moved.movedim(1, -1).contiguous())


def _hat_matrix(shift: torch.Tensor, size: int, real_dtype: torch.dtype) -> torch.Tensor:
    """Bilinear weights of a move by ``shift`` (M,): ``H[m, o, s] = max(0, 1 - |s - (o - shift[m])|)``,
    ``(M, size, size)``.

    With ``u = o - shift``, ``r0 = floor(u)``, ``f = u - r0``: source ``r0`` gets ``1 - f``,
    ``r0 + 1`` gets ``f``, every other source 0, and sources outside ``0..size-1`` do not
    exist (zero fill). Only ``f`` is formed in float64 (the coordinates' dtype) and rounded
    once to ``real_dtype``; ``s - o + floor(shift)`` is an exact integer there, so the
    matrix is built in ``real_dtype`` (not differentiated: shifts are data).
    """
    whole = torch.floor(shift)
    fraction = (shift - whole).to(real_dtype)  # u's fraction is 1 - this, or 0 when this is 0
    index = torch.arange(size, device=shift.device)
    offset = (index[None, :] - index[:, None]).to(real_dtype)  # s - o, exact
    distance = offset[None] + whole.to(real_dtype)[:, None, None] + fraction[:, None, None]
    return torch.clamp(1 - distance.abs(), min=0)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"invalid patch size: expected an int, received size={size!r}")
    if size < 4 or size % 4:
        raise ValueError(
            "invalid patch size: expected a positive multiple of 4 (the central window N/2 "
            f"is padded by N/4 on each side), received size={size}"
        )
    return int(size)


def pad_to_full(head: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad network head output from ``N/2 x N/2`` to ``N x N`` (``N/4`` per side).

    Parameters
    ----------
    head : torch.Tensor, shape (..., N/2, N/2)
    size : int
        ``N``, a multiple of 4.

    Returns
    -------
    torch.Tensor, shape (..., N, N), dtype of ``head``
    """
    size = _check_size(size)
    head = torch.as_tensor(head)
    half, quarter = size // 2, size // 4
    if head.dim() < 2 or tuple(head.shape[-2:]) != (half, half):
        raise ValueError(
            f"invalid head shape: expected (..., {half}, {half}) for size={size}, "
            f"received head.shape={tuple(head.shape)}"
        )
    return torch.nn.functional.pad(head, (quarter, quarter, quarter, quarter))


def central_window_mask(size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Ones in the central ``N/2 x N/2`` window, zeros elsewhere.

    ``w[r, c] = 1`` for ``N//4 <= r, c < N//4 + N//2``: exactly the pixels
    :func:`pad_to_full` fills.

    Parameters
    ----------
    size : int
        ``N``, a multiple of 4.
    dtype : torch.dtype
        Real dtype of the mask (default float32).

    Returns
    -------
    torch.Tensor, shape (N, N), on the CPU (move it with ``.to(device)``)
    """
    size = _check_size(size)
    mask = torch.zeros((size, size), dtype=dtype)
    start, stop = size // 4, size // 4 + size // 2
    mask[start:stop, start:stop] = 1
    return mask


def probe_weights(probe: torch.Tensor) -> torch.Tensor:
    """Merge weights that follow the illumination, ``w * max(|P| / max(w |P|), floor)`` (docs/physics.md §4).

    Detached: no gradient reaches a trainable probe through the merge weights.

    Parameters
    ----------
    probe : torch.Tensor, complex, shape (N, N)

    Returns
    -------
    torch.Tensor, real, shape (N, N), on the probe's device
    """
    probe = torch.as_tensor(probe).detach()
    window = central_window_mask(probe.shape[-1], _real_dtype(probe.dtype)).to(probe.device)
    weights = probe.abs() * window
    return torch.clamp(weights / weights.max(), min=PROBE_WEIGHT_FLOOR) * window


def _merge_weights(weights: torch.Tensor | None, patches: torch.Tensor) -> torch.Tensor:
    """The central window by default, else ``weights``, in the patches' real dtype and device."""
    real_dtype = _real_dtype(patches.dtype)
    if weights is None:
        return central_window_mask(patches.shape[-1], real_dtype).to(patches.device)
    weights = torch.as_tensor(weights, device=patches.device)
    if tuple(weights.shape) != tuple(patches.shape[-2:]):
        raise ValueError(
            f"invalid merge weights: expected shape {tuple(patches.shape[-2:])}, received {tuple(weights.shape)}"
        )
    return weights.to(real_dtype)


def _check_group_tensors(patches: torch.Tensor, offsets_xy: torch.Tensor) -> None:
    if patches.dim() != 4 or patches.shape[-1] != patches.shape[-2]:
        raise ValueError(
            f"invalid patches shape: expected (B, C, N, N), received patches.shape={tuple(patches.shape)}"
        )
    expected = tuple(patches.shape[:2]) + (2,)
    if tuple(offsets_xy.shape) != expected:
        raise ValueError(
            f"invalid offsets shape: expected {expected} for patches of shape "
            f"{tuple(patches.shape)}, received offsets_xy.shape={tuple(offsets_xy.shape)}"
        )


def merge_patches(
    patches: torch.Tensor, offsets_xy: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
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
    patches : torch.Tensor, shape (B, C, N, N), complex64 or float32
    offsets_xy : torch.Tensor, shape (B, C, 2), float
        ``offset_c = position_c - centre`` in pixels, ``(x, y)``.
    weights : torch.Tensor, real, shape (N, N), optional
        Merge weights ``w`` (default: the central window; or :func:`probe_weights`).

    Returns
    -------
    torch.Tensor, shape (B, N, N), dtype of ``patches``
    """
    patches = torch.as_tensor(patches)
    offsets_xy = torch.as_tensor(offsets_xy, device=patches.device)
    _check_group_tensors(patches, offsets_xy)
    real_dtype = _real_dtype(patches.dtype)
    window = _merge_weights(weights, patches)
    batch, channels, size = patches.shape[0], patches.shape[1], patches.shape[-1]
    shifts = offsets_xy.to(COORDINATE_DTYPE).reshape(-1, 2)
    matrices = _translation_matrices(shifts, size, size, real_dtype)  # once for the patches and the weights
    coverage = _move(window.expand(batch * channels, size, size), matrices).reshape(patches.shape).sum(dim=1)
    summed = _move((patches * window).reshape(-1, size, size), matrices).reshape(patches.shape).sum(dim=1)
    threshold = torch.tensor(MERGE_MASK_THRESHOLD, dtype=real_dtype, device=patches.device)
    quotient = summed / torch.maximum(coverage, threshold)
    return torch.where(coverage > threshold, quotient, torch.zeros_like(quotient))


def relative_offsets(offsets_xy: torch.Tensor) -> torch.Tensor:
    """``rel[b, c, k] = offset_k - offset_c``: channel ``k`` seen from channel ``c``'s frame."""
    return offsets_xy[:, None, :, :] - offsets_xy[:, :, None, :]


def enforce_overlap(
    patches: torch.Tensor, offsets_xy: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Overlap constraint: each channel becomes the group's average seen from its own frame.

    Equation: ``O'_c = merge_patches(O, relative_offsets(offsets)[:, c])``, i.e.
    ``S_c = sum_k T_{position_k - position_c}(w * O_k)``, ``W_c`` the same sum of windows,
    ``O'_c = where(W_c > t, S_c / maximum(W_c, t), 0)``: a channel's own prediction enters
    unshifted (docs/physics.md §4).

    Parameters
    ----------
    patches : torch.Tensor, shape (B, C, N, N)
    offsets_xy : torch.Tensor, shape (B, C, 2)
    weights : torch.Tensor, real, shape (N, N), optional
        Merge weights (default: the central window).

    Returns
    -------
    torch.Tensor, shape (B, C, N, N)
        ``patches`` itself when ``C == 1`` (no grouping, nothing to enforce).
    """
    patches = torch.as_tensor(patches)
    offsets_xy = torch.as_tensor(offsets_xy, device=patches.device)
    _check_group_tensors(patches, offsets_xy)
    batch, channels, size = patches.shape[0], patches.shape[1], patches.shape[-1]
    if channels == 1:
        return patches
    stacked = patches[:, None].expand(batch, channels, channels, size, size).reshape(batch * channels, channels, size, size)
    relative = relative_offsets(offsets_xy.to(COORDINATE_DTYPE)).reshape(batch * channels, channels, 2)
    return merge_patches(stacked, relative, weights).reshape(batch, channels, size, size)


def illuminate(patches: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
    """Exit waves ``psi = O * P``, the probe broadcast over the leading axes.

    Parameters
    ----------
    patches : torch.Tensor, complex64, shape (..., N, N)
    probe : torch.Tensor, complex64, shape (N, N)
    """
    patches = torch.as_tensor(patches)
    return patches * torch.as_tensor(probe, device=patches.device).to(patches.dtype)


def far_field(psi: torch.Tensor) -> torch.Tensor:
    """Far-field wave ``F = fftshift(fft2(psi)) / N``, zero frequency at pixel ``N // 2``.

    Unitary (Parseval: ``sum |F|**2 == sum |psi|**2``); FFT and shift act on the last
    two axes.

    Parameters
    ----------
    psi : torch.Tensor, complex64, shape (..., N, N)

    Returns
    -------
    torch.Tensor, complex64, shape (..., N, N)
    """
    psi = torch.as_tensor(psi)
    size = psi.shape[-1]
    spectrum = torch.fft.fftshift(torch.fft.fft2(psi, dim=(-2, -1)), dim=(-2, -1))
    return spectrum / size


def poisson_nll(predicted_intensity: torch.Tensor, observed_intensity: torch.Tensor) -> torch.Tensor:
    """Poisson negative log-likelihood per pixel, plain mean over every element.

    Equation: ``mean(I_hat - y * log(I_hat + eps))``, ``eps = POISSON_EPS = 1e-6``
    (the constant ``lgamma(y + 1)`` is dropped, so the loss can be negative).

    Parameters
    ----------
    predicted_intensity : torch.Tensor, float32, any shape
        ``I_hat = (s * A_hat)**2``, photons.
    observed_intensity : torch.Tensor, float32, same shape
        ``y = (s * X_n)**2``, photons.

    Returns
    -------
    torch.Tensor, float32, shape ()
    """
    predicted = torch.as_tensor(predicted_intensity)
    observed = torch.as_tensor(observed_intensity, device=predicted.device).to(predicted.dtype)
    return torch.mean(predicted - observed * torch.log(predicted + POISSON_EPS))


def amplitude_mae(
    predicted_amplitude: torch.Tensor, observed_amplitude: torch.Tensor, intensity_scale
) -> torch.Tensor:
    """Mean absolute error of scaled amplitudes, ``mean(|s * A_hat - s * X_n|)``.

    Parameters
    ----------
    predicted_amplitude : torch.Tensor, float32, any shape
        ``A_hat``.
    observed_amplitude : torch.Tensor, float32, same shape
        ``X_n``.
    intensity_scale : float or torch.Tensor, shape ()
        ``s``.

    Returns
    -------
    torch.Tensor, float32, shape ()
    """
    predicted = torch.as_tensor(predicted_amplitude)
    observed = torch.as_tensor(observed_amplitude, device=predicted.device).to(predicted.dtype)
    scale = torch.as_tensor(intensity_scale, device=predicted.device).to(predicted.dtype)
    return torch.mean(torch.abs(scale * predicted - scale * observed))


def _safe_angle(values: torch.Tensor) -> torch.Tensor:
    """``angle(z)`` with ``angle(0) = 0`` and a zero (not NaN) gradient at ``z = 0``.

    ``angle``'s gradient divides by ``|z|**2``, NaN at the origin; evaluating it at
    ``1 + 0i`` there (and discarding the value) keeps it finite.
    """
    at_origin = values == 0
    safe = torch.where(at_origin, torch.ones_like(values), values)
    return torch.where(at_origin, torch.zeros_like(safe.real), torch.angle(safe))


def supervised_mae(pred_patches: torch.Tensor, true_patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitude and phase MAE of predicted object patches against ground truth.

    Equations::

        amplitude_mae = mean(| |O_hat| - |Y| |)
        phase_mae     = mean(| angle(O_hat * conj(Y)) |)      wrapped to (-pi, pi]

    Where either patch is 0 the phase error is ``angle(0) = 0`` (with a zero gradient).

    Parameters
    ----------
    pred_patches : torch.Tensor, complex64, any shape
    true_patches : torch.Tensor, complex64, same shape

    Returns
    -------
    (torch.Tensor, torch.Tensor), float32 scalars
        ``(amplitude_mae, phase_mae)``, the phase in radians.
    """
    predicted = torch.as_tensor(pred_patches)
    truth = torch.as_tensor(true_patches, device=predicted.device).to(predicted.dtype)
    amplitude_error = torch.mean(torch.abs(torch.abs(predicted) - torch.abs(truth)))
    phase_error = torch.mean(torch.abs(_safe_angle(predicted * torch.conj(truth))))
    return amplitude_error, phase_error


def complex_combine(amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``A * exp(i * phi) = A cos(phi) + i A sin(phi)``, complex64 (same shape)."""
    return torch.complex(amplitude * torch.cos(phase), amplitude * torch.sin(phase))
