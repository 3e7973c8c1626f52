"""Host-side affine maps for augmentation: small per-image matrices drawn and composed with
NumPy (the batch itself is resampled on the device by `arraynet.augment`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from arraynet.augment_settings import DEFAULT_AUGMENT

if TYPE_CHECKING:
    from arraynet.backends.base import HostRNG

Size = int | tuple[int, int]


def _hw(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def affine_matrix(zoom: Any, angle_deg: Any, dx: Any, dy: Any, size: Size = 28) -> np.ndarray:
    """Inverse maps (output -> input pixel) for explicit parameters, float64 on the host.

    Scalars give one (2, 3) matrix; equal-length 1-D arrays give (n, 2, 3). `size` is the side
    of a square image or (H, W). The forward map is ``out = Z R (in - c) + c + (dx, dy)`` with
    c the image centre; ``zoom=1, angle_deg=0, dx=dy=0`` gives the identity exactly.
    """
    h, w = _hw(size)
    z, ang, tx, ty = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (zoom, angle_deg, dx, dy))
    )
    theta = np.deg2rad(ang)
    cos, sin = np.cos(theta) / z, np.sin(theta) / z
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    # inverse linear part: (1/z) R(-theta) in image coordinates (y down)
    a, b, c, d = cos, -sin, sin, cos
    px, py = cx + tx, cy + ty
    m = np.empty((*z.shape, 2, 3), dtype=np.float64)
    m[..., 0, 0], m[..., 0, 1], m[..., 0, 2] = a, b, cx - (a * px + b * py)
    m[..., 1, 0], m[..., 1, 1], m[..., 1, 2] = c, d, cy - (c * px + d * py)
    return m


def random_affine_params(
    rng: HostRNG,
    n: int,
    *,
    zoom: tuple[float, float] = DEFAULT_AUGMENT.zoom,
    rotation: float = DEFAULT_AUGMENT.rotation,
    shift: float = DEFAULT_AUGMENT.shift,
    size: Size = 28,
) -> np.ndarray:
    """Draw `n` random inverse maps (n, 2, 3) float64 with `rng.host_uniform`.

    Zoom factor in `zoom`, angle in [-rotation, rotation] degrees, horizontal and vertical shift
    in [-shift, shift] of the side, rounded to whole pixels. The same three draws happen
    whatever the ranges, so a seed gives the same stream with any settings.
    """
    h, w = _hw(size)
    z = rng.host_uniform((n,), float(zoom[0]), float(zoom[1]))
    ang = rng.host_uniform((n,), -float(rotation), float(rotation))
    sh = rng.host_uniform((n, 2), -float(shift), float(shift))
    dx = np.rint(sh[:, 0] * w)
    dy = np.rint(sh[:, 1] * h)
    return affine_matrix(z, ang, dx, dy, (h, w))


def gaussian_smoothing_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix S with S @ v = v convolved with a unit-sum Gaussian of width
    `sigma` (pixels), zero outside the image."""
    i = np.arange(size, dtype=np.float64)
    radius = max(1, int(np.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    d = i[:, None] - i[None, :]
    s = np.zeros((size, size))
    inside = np.abs(d) <= radius
    s[inside] = k[(d[inside] + radius).astype(int)]
    return s


def random_elastic_field(
    rng: HostRNG, n: int, alpha: float, sigma: float, size: Size = 28
) -> np.ndarray:
    """Random smooth displacements (n, H, W, 2) in pixels, float64 on the host (Simard et
    al. 2003): uniform noise in [-1, 1] per pixel and axis, smoothed by a Gaussian of width
    `sigma` and scaled by `alpha`. Component 0 moves the sampling point along x (columns),
    component 1 along y (rows)."""
    h, w = _hw(size)
    u = rng.host_uniform((n, 2, h, w), -1.0, 1.0)
    sh, sw = gaussian_smoothing_matrix(h, sigma), gaussian_smoothing_matrix(w, sigma)
    field = sh @ u @ sw.T  # smooth the columns, then the rows (two GEMMs, not an einsum loop)
    return np.ascontiguousarray(np.moveaxis(alpha * field, 1, -1))
