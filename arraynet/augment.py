"""Random affine augmentation of NHWC image batches (zoom, rotation, shift), Array-API only.

Each image gets one affine map composed on the host (float64) from a zoom about the centre,
a rotation about the centre and a whole-pixel shift, applied in that order. The batch is then
resampled on its own device by index arithmetic: every output pixel is pulled back through the
inverse map and read with bilinear interpolation, zero outside the image.

Conventions (pixel centres sit at integer coordinates, x = column, y = row, row 0 at the top):

* zoom > 1 enlarges the content (and crops), zoom < 1 shrinks it (and pads with zeros);
* a positive angle turns the content counter-clockwise as displayed, so 90 degrees on a square
  image equals ``np.rot90(image)`` over the (H, W) axes;
* dx > 0 moves the content right, dy > 0 moves it down, both in pixels.

Maps handed to :func:`affine_resample` are *inverse* maps (output pixel -> input pixel), 2x3
matrices ``[[a, b, tx], [c, d, ty]]`` with ``src_x = a*x + b*y + tx``, ``src_y = c*x + d*y + ty``.
With a host generator (`HostRNG`) the small per-image parameters are drawn and composed with
NumPy on the host and copied over (identical on every backend); with a device generator
(`DeviceRNG`) they are drawn, composed and smoothed on the batch's own device, so an
augmented step moves nothing between host and device. The batch math uses only the array's
own namespace.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from array_api_compat import array_namespace, is_array_api_obj

from arraynet.augment_settings import DEFAULT_AUGMENT, AugmentSettings
from arraynet.backends.portable import clip
from arraynet.data.affine import affine_matrix, random_affine_params, random_elastic_field

if TYPE_CHECKING:
    from arraynet.backends.base import HostRNG

Array = Any

#: The former name of `AugmentSettings` (`arraynet.augment_settings`), kept for old imports.
AugmentConfig = AugmentSettings

__all__ = [
    "DEFAULT_AUGMENT",
    "AugmentConfig",
    "AugmentSettings",
    "affine_matrix",
    "affine_resample",
    "augment_batch",
    "compose_maps",
    "device_affine_params",
    "device_elastic_field",
    "maybe_augment",
    "random_affine_params",
    "random_elastic_field",
]


def _maps_on_device(inv_maps: Any, xp: Any, x: Array, dtype: Any) -> Array:
    """Host maps (NumPy, lists) or arrays of any namespace, as `dtype` on x's device."""
    on_device = is_array_api_obj(inv_maps) and array_namespace(inv_maps) is xp
    if on_device and inv_maps.device == x.device:  # already there (maps drawn on the device)
        return inv_maps if inv_maps.dtype == dtype else xp.astype(inv_maps, dtype)
    if isinstance(inv_maps, list | tuple):
        return xp.asarray(inv_maps, dtype=dtype, device=x.device)
    try:  # converted as they are copied (float64 host maps never reach the device)
        return xp.asarray(inv_maps, dtype=dtype, device=x.device)
    except (TypeError, ValueError, RuntimeError):
        return xp.asarray(inv_maps.tolist(), dtype=dtype, device=x.device)


def affine_resample(x: Array, inv_maps: Any, displacement: Any = None) -> Array:
    """Resample an NHWC batch through per-image inverse maps, bilinear with zero fill.

    `inv_maps` is (N, 2, 3), a host NumPy array or an array of `x`'s namespace. Integer source
    coordinates read one pixel with weight exactly 1, so the identity returns `x` unchanged.
    `displacement` (N, H, W, 2), optional, is added to every source coordinate (x, y) after
    the map (elastic distortion). Floating `x` keeps its dtype; other dtypes are computed and
    returned as float32.
    """
    xp = array_namespace(x)
    n, h, w, ch = x.shape
    dt = x.dtype if xp.isdtype(x.dtype, "real floating") else xp.float32
    if x.dtype != dt:
        x = xp.astype(x, dt)
    dev = x.device
    m = _maps_on_device(inv_maps, xp, x, dt)
    if tuple(m.shape) != (n, 2, 3):
        raise ValueError(f"inv_maps must have shape ({n}, 2, 3), not {tuple(m.shape)}")

    def coef(i: int, j: int) -> Array:
        return xp.reshape(m[:, i, j], (n, 1, 1))

    xo = xp.reshape(xp.arange(w, dtype=dt, device=dev), (1, 1, w))
    yo = xp.reshape(xp.arange(h, dtype=dt, device=dev), (1, h, 1))
    # source coordinates (N, H, W): small (N,1,W) and (N,H,1) terms, one full-size add each
    sx = (coef(0, 0) * xo + coef(0, 2)) + coef(0, 1) * yo
    sy = (coef(1, 0) * xo + coef(1, 2)) + coef(1, 1) * yo
    if displacement is not None:
        disp = _maps_on_device(displacement, xp, x, dt)
        if tuple(disp.shape) != (n, h, w, 2):
            raise ValueError(f"displacement must have shape ({n}, {h}, {w}, 2)")
        sx, sy = sx + disp[..., 0], sy + disp[..., 1]
    fx0, fy0 = xp.floor(sx), xp.floor(sy)
    fx = xp.reshape(sx - fx0, (n, h, w, 1))
    fy = xp.reshape(sy - fy0, (n, h, w, 1))

    # Two zero pixels of padding on every side: clipping the top-left neighbour to [-2, W]
    # keeps in-range reads exact and sends every out-of-range read (with its +1 neighbour,
    # reached by offsetting the flat view) onto zeros, so no masks are needed.
    hp, wp = h + 4, w + 4
    cx, cy = clip(fx0, -2, w), clip(fy0, -2, h)
    if hp * wp * xp.finfo(dt).eps <= 1:  # in-image offsets are exact in dt: fewer int64 ops
        local = xp.astype(cy * wp + cx, xp.int64)
    else:
        local = xp.astype(cy, xp.int64) * wp + xp.astype(cx, xp.int64)
    first = 2 * wp + 2
    base = xp.reshape(xp.arange(n, dtype=xp.int64, device=dev) * (hp * wp) + first, (n, 1, 1))
    idx = xp.reshape(local + base, (-1,))

    zr = xp.zeros((n, 2, w, ch), dtype=dt, device=dev)
    xpad = xp.concat([zr, x, zr], axis=1)
    zc = xp.zeros((n, hp, 2, ch), dtype=dt, device=dev)
    xpad = xp.concat([zc, xpad, zc], axis=2)

    if ch == 1:
        flat = xp.reshape(xpad, (n * hp * wp,))

        def gather(offset: int) -> Array:
            return xp.reshape(xp.take(flat[offset:], idx), (n, h, w, 1))

    else:
        flat = xp.reshape(xpad, (n * hp * wp, ch))

        def gather(offset: int) -> Array:
            return xp.reshape(xp.take(flat[offset:, :], idx, axis=0), (n, h, w, ch))

    v00, v01, v10, v11 = gather(0), gather(1), gather(wp), gather(wp + 1)
    upper = v00 + (v01 - v00) * fx
    lower = v10 + (v11 - v10) * fx
    return upper + (lower - upper) * fy


def augment_batch(
    x: Array,
    rng: HostRNG,
    *,
    zoom: tuple[float, float] = DEFAULT_AUGMENT.zoom,
    rotation: float = DEFAULT_AUGMENT.rotation,
    shift: float = DEFAULT_AUGMENT.shift,
    elastic: tuple[float, float] | None = DEFAULT_AUGMENT.elastic,
) -> Array:
    """Randomly zoom, rotate and shift every image of an NHWC batch (one map per image);
    with `elastic=(alpha, sigma)` also distort it elastically (drawn after the maps)."""
    n, h, w = x.shape[0], x.shape[1], x.shape[2]
    on_device = getattr(rng, "kind", "host") == "device"
    draw_maps = device_affine_params if on_device else random_affine_params
    maps = draw_maps(rng, n, zoom=zoom, rotation=rotation, shift=shift, size=(h, w))
    disp = None
    if elastic is not None and float(elastic[0]) > 0:
        alpha, sigma = (float(v) for v in elastic)
        draw_field = device_elastic_field if on_device else random_elastic_field
        disp = draw_field(rng, n, alpha, sigma, (h, w))
    return affine_resample(x, maps, disp)


def compose_maps(zoom: Array, angle_deg: Array, dx: Array, dy: Array, size: tuple[int, int]):
    """`affine_matrix` on the device: per-image parameters (n,) of one namespace -> inverse
    maps (n, 2, 3) in their dtype and on their device."""
    xp = array_namespace(zoom)
    h, w = size
    theta = angle_deg * (math.pi / 180.0)
    cos, sin = xp.cos(theta) / zoom, xp.sin(theta) / zoom
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    px, py = dx + cx, dy + cy
    row0 = xp.stack([cos, -sin, cx - (cos * px - sin * py)], axis=1)
    row1 = xp.stack([sin, cos, cy - (sin * px + cos * py)], axis=1)
    return xp.stack([row0, row1], axis=1)


def device_affine_params(
    rng: Any,
    n: int,
    *,
    zoom: tuple[float, float] = DEFAULT_AUGMENT.zoom,
    rotation: float = DEFAULT_AUGMENT.rotation,
    shift: float = DEFAULT_AUGMENT.shift,
    size: tuple[int, int] = (28, 28),
) -> Array:
    """`random_affine_params` drawn with a device generator's `params`: the same ranges and
    rounding, the maps (n, 2, 3) composed on the device."""
    xp = rng.backend.xp
    h, w = size
    z = rng.params((n,), float(zoom[0]), float(zoom[1]))
    ang = rng.params((n,), -float(rotation), float(rotation))
    sh = rng.params((n, 2), -float(shift), float(shift))
    return compose_maps(z, ang, xp.round(sh[:, 0] * w), xp.round(sh[:, 1] * h), (h, w))


def smoothing_matrix(xp: Any, size: int, sigma: float, dtype: Any, device: Any) -> Array:
    """`gaussian_smoothing_matrix` built on the device (no host copy)."""
    radius = max(1, math.ceil(3.0 * sigma))
    taps = xp.arange(-radius, radius + 1, dtype=dtype, device=device) / sigma
    norm = xp.sum(xp.exp(-0.5 * taps * taps))
    i = xp.arange(size, dtype=dtype, device=device)
    d = xp.reshape(i, (size, 1)) - xp.reshape(i, (1, size))
    k = xp.exp(-0.5 * (d / sigma) * (d / sigma)) / norm
    return xp.where(xp.abs(d) <= radius, k, xp.zeros((), dtype=dtype, device=device))


def device_elastic_field(
    rng: Any, n: int, alpha: float, sigma: float, size: tuple[int, int] = (28, 28)
) -> Array:
    """`random_elastic_field` with a device generator: the noise drawn, smoothed and
    scaled on the device; (n, H, W, 2) float64."""
    b = rng.backend
    xp, f64 = b.xp, b.dtype("float64")
    h, w = size
    u = rng.params((n, 2, h, w), -1.0, 1.0)
    sh = smoothing_matrix(xp, h, sigma, f64, b.device)
    sw = smoothing_matrix(xp, w, sigma, f64, b.device)
    field = sh @ u @ xp.matrix_transpose(sw)
    return xp.permute_dims(field * alpha, (0, 2, 3, 1))


def maybe_augment(x: Array, rng: HostRNG, p: float, **kw: Any) -> Array:
    """Augment the whole batch with probability `p`, else return `x` itself.

    The coin (`rng.host_random()`) is drawn on every call so RNG streams stay aligned.
    """
    if rng.host_random() < p:
        return augment_batch(x, rng, **kw)
    return x
