"""Random affine augmentation: exact geometry, determinism and backend agreement."""

from __future__ import annotations

import numpy as np
import pytest

from arraynet.augment import (
    DEFAULT_AUGMENT,
    AugmentSettings,
    affine_matrix,
    affine_resample,
    augment_batch,
    maybe_augment,
    random_affine_params,
    random_elastic_field,
)
from arraynet.backends import get_backend
from tests.conftest import CPU_BACKENDS, HAVE_TORCH

IDENTITY = {"zoom": (1.0, 1.0), "rotation": 0.0, "shift": 0.0}


def _images(n: int = 6, size: int = 28, c: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, c), dtype=np.float32)


def _shift_zero_fill(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """np.roll over (H, W) of an NHWC batch, with zeros instead of wrap-around."""
    h, w = a.shape[1:3]
    if abs(dx) >= w or abs(dy) >= h:
        return np.zeros_like(a)
    out = np.roll(a, (dy, dx), axis=(1, 2))
    out[:, : max(dy, 0)] = 0
    out[:, h + min(dy, 0) :] = 0
    out[:, :, : max(dx, 0)] = 0
    out[:, :, w + min(dx, 0) :] = 0
    return out


def _resample_np(a: np.ndarray, maps: np.ndarray) -> np.ndarray:
    return np.asarray(affine_resample(a, maps))


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_range_and_identity(name, channels):
    b = get_backend(name)
    img = _images(c=channels)
    x = b.from_host(img)
    y = augment_batch(x, b.rng(3))
    assert tuple(y.shape) == img.shape and y.dtype == b.dtype("float32")
    out = b.to_host(y)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.array_equal(out, img)
    same = augment_batch(x, b.rng(3), **IDENTITY)
    np.testing.assert_array_equal(b.to_host(same), img)


def test_identity_params_are_exact():
    m = random_affine_params(get_backend("numpy").rng(0), 4, **IDENTITY)
    assert m.shape == (4, 2, 3) and m.dtype == np.float64
    np.testing.assert_array_equal(m, np.broadcast_to([[1.0, 0, 0], [0, 1.0, 0]], (4, 2, 3)))
    np.testing.assert_array_equal(affine_matrix(1.0, 0.0, 0, 0), [[1.0, 0, 0], [0, 1.0, 0]])


def test_random_params_ranges():
    m = random_affine_params(get_backend("numpy").rng(1), 500)
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]  # 1 / zoom**2
    zoom = 1.0 / np.sqrt(det)
    assert zoom.min() >= 0.8 - 1e-12 and zoom.max() <= 1.2 + 1e-12
    angle = np.rad2deg(np.arctan2(m[:, 1, 0], m[:, 0, 0]))
    assert np.abs(angle).max() <= 25.0 + 1e-9 and np.abs(angle).max() > 20.0
    # without zoom and rotation the inverse translation is minus a whole-pixel shift
    t = random_affine_params(get_backend("numpy").rng(2), 500, zoom=(1, 1), rotation=0)[..., 2]
    np.testing.assert_array_equal(t, np.rint(t))
    assert np.abs(t).max() == 6.0  # rint(0.2 * 28)


def test_determinism_and_seed_sensitivity():
    b = get_backend("numpy")
    x = b.from_host(_images())
    y1 = augment_batch(x, b.rng(7))
    y2 = augment_batch(x, b.rng(7))
    y3 = augment_batch(x, b.rng(8))
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(y1, y3)


def test_backends_agree():
    img = _images(n=8, c=2)
    outs = []
    for name in CPU_BACKENDS:
        b = get_backend(name)
        outs.append(b.to_host(augment_batch(b.from_host(img), b.rng(21))))
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("dx,dy", [(3, -2), (-5, 4), (0, 7), (27, 0), (-30, 1)])
def test_integer_shift_is_exact(dx, dy):
    img = _images(n=2)
    got = _resample_np(img, np.stack([affine_matrix(1.0, 0.0, dx, dy)] * 2))
    np.testing.assert_array_equal(got, _shift_zero_fill(img, dx, dy))


def test_single_bright_pixel_moves():
    img = np.zeros((1, 28, 28, 1), np.float32)
    img[0, 10, 12, 0] = 1.0
    got = _resample_np(img, affine_matrix(1.0, 0.0, 4, -3)[None])
    assert got[0, 7, 16, 0] == 1.0 and got.sum() == 1.0  # right 4, up 3


@pytest.mark.parametrize("size", [5, 28])
def test_rotation_matches_rot90(size):
    """Positive angles turn the content counter-clockwise as displayed, like np.rot90."""
    img = _images(n=2, size=size, c=2, seed=4)
    for angle, k in [(90.0, 1), (-90.0, -1), (180.0, 2)]:
        got = _resample_np(img, np.stack([affine_matrix(1.0, angle, 0, 0, size)] * 2))
        np.testing.assert_allclose(got, np.rot90(img, k, axes=(1, 2)), rtol=0, atol=1e-6)


def test_rotation_direction_on_a_marker():
    img = np.zeros((1, 5, 5, 1), np.float32)
    img[0, 2, 4, 0] = 1.0  # right of the centre
    got = _resample_np(img, affine_matrix(1.0, 90.0, 0, 0, 5)[None])
    assert got[0, 0, 2, 0] == pytest.approx(1.0)  # now above the centre


def _blob(size: int = 28, radius: float = 3.0) -> np.ndarray:
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    return ((yy - c) ** 2 + (xx - c) ** 2 <= radius**2).astype(np.float32)[None, :, :, None]


def test_zoom_enlarges_and_shrinks_about_the_centre():
    img = _blob()
    area = img.sum()
    big = _resample_np(img, affine_matrix(2.0, 0.0, 0, 0)[None])
    small = _resample_np(img, affine_matrix(0.5, 0.0, 0, 0)[None])
    assert 3.0 * area < big.sum() < 5.0 * area
    assert 0.15 * area < small.sum() < 0.35 * area
    yy, xx = np.mgrid[:28, :28]
    for out in (big, small):
        w = out[0, :, :, 0]
        assert (w * yy).sum() / w.sum() == pytest.approx(13.5, abs=1e-4)
        assert (w * xx).sum() / w.sum() == pytest.approx(13.5, abs=1e-4)
    # shrinking pads the border with zeros
    full = _resample_np(np.ones_like(img), affine_matrix(0.5, 0.0, 0, 0)[None])
    assert full[0, 0].max() == 0.0 and full[0, 13, 13, 0] == 1.0


def test_order_is_zoom_rotate_then_shift():
    inv = affine_matrix(1.5, 30.0, 4, -2)
    pt = np.array([20.0, 5.0])  # an output point (x, y)
    src = inv[:, :2] @ pt + inv[:, 2]
    c = np.array([13.5, 13.5])
    th = np.deg2rad(30.0)
    rot = np.array([[np.cos(th), np.sin(th)], [-np.sin(th), np.cos(th)]])
    np.testing.assert_allclose(1.5 * rot @ (src - c) + c + [4, -2], pt, atol=1e-12)


def test_maps_as_device_array_and_bad_shape():
    img = _images(n=3)
    maps = random_affine_params(get_backend("numpy").rng(5), 3)
    ref = _resample_np(img, maps)
    names = ["array-api-strict"] + (["torch"] if HAVE_TORCH else [])
    for name in names:
        b = get_backend(name)
        out = affine_resample(b.from_host(img), b.from_host(maps))
        np.testing.assert_allclose(b.to_host(out), ref, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="inv_maps"):
        affine_resample(img, maps[:2])


def test_non_square_shift():
    img = np.random.default_rng(0).random((2, 10, 16, 1), dtype=np.float32)
    got = _resample_np(img, np.stack([affine_matrix(1.0, 0.0, 3, 2, (10, 16))] * 2))
    np.testing.assert_array_equal(got, _shift_zero_fill(img, 3, 2))


def test_maybe_augment_probability_and_stream_alignment():
    b = get_backend("numpy")
    x = b.from_host(_images())
    r0, ref = b.rng(9), b.rng(9)
    assert maybe_augment(x, r0, 0.0) is x
    ref.host_random()
    assert r0.get_state() == ref.get_state()  # the coin is drawn even when p=0
    y = maybe_augment(x, b.rng(9), 1.0)
    assert not np.array_equal(y, x)
    coin = b.rng(9)
    coin.host_random()
    np.testing.assert_array_equal(y, augment_batch(x, coin))


def test_settings_round_trip_and_validation():
    cfg = AugmentSettings(zoom=(0.9, 1.1), rotation=10, shift=0.1)
    d = cfg.to_dict()
    assert d == {"zoom": [0.9, 1.1], "rotation": 10.0, "shift": 0.1}
    assert AugmentSettings.from_dict(d) == cfg
    assert AugmentSettings.from_dict({}) == AugmentSettings() == DEFAULT_AUGMENT
    el = AugmentSettings(elastic=[34, 4])
    assert el.elastic == (34.0, 4.0) and el.to_dict()["elastic"] == [34.0, 4.0]
    assert AugmentSettings.from_dict(el.to_dict()) == el
    b = get_backend("numpy")
    x = b.from_host(_images())
    np.testing.assert_array_equal(
        augment_batch(x, b.rng(1), **cfg.kwargs()),
        augment_batch(x, b.rng(1), zoom=(0.9, 1.1), rotation=10, shift=0.1),
    )
    with pytest.raises(ValueError):
        AugmentSettings(zoom=(1.2, 0.8))
    with pytest.raises(ValueError):
        AugmentSettings(rotation=-1)
    with pytest.raises(ValueError):
        AugmentSettings(elastic=(8.0, 0.0))
    from arraynet.augment import AugmentConfig  # the former name

    assert AugmentConfig is AugmentSettings


def test_defaults_are_defined_once():
    """The recipe's dict, the keyword defaults of the augmentation functions and the
    host-side draws all come from `DEFAULT_AUGMENT` (the recipe's JSON form unchanged)."""
    import inspect

    from arraynet import augment
    from arraynet.data import affine
    from arraynet.train.recipe import Recipe

    assert Recipe().augment == {"zoom": [0.8, 1.2], "rotation": 25.0, "shift": 0.2}
    assert Recipe().augment == DEFAULT_AUGMENT.to_dict()
    assert Recipe().augment is not Recipe().augment  # a fresh dict for every recipe
    assert list(Recipe().augment) == ["zoom", "rotation", "shift"]  # (the JSON key order)
    assert DEFAULT_AUGMENT.kwargs() == {
        "zoom": (0.8, 1.2), "rotation": 25.0, "shift": 0.2, "elastic": None,
    }  # fmt: skip
    for fn in (augment.augment_batch, augment.device_affine_params, affine.random_affine_params):
        params = inspect.signature(fn).parameters
        for key in ("zoom", "rotation", "shift", "elastic"):
            if key in params:  # the very objects, not equal literals written again
                assert params[key].default is getattr(DEFAULT_AUGMENT, key), (fn, key)
    b = get_backend("numpy")
    x = b.from_host(_images())
    np.testing.assert_array_equal(
        augment_batch(x, b.rng(4)), augment_batch(x, b.rng(4), **DEFAULT_AUGMENT.kwargs())
    )


# -- elastic distortion ---------------------------------------------------------------------


def test_smoothing_matrix_is_a_unit_gaussian_inside():
    from arraynet.data.affine import gaussian_smoothing_matrix

    s = gaussian_smoothing_matrix(28, 3.0)
    assert s.shape == (28, 28) and np.allclose(s, s.T)
    np.testing.assert_allclose(s[14].sum(), 1.0, atol=1e-12)  # far from the edges
    assert s[14, 14] == s[14].max() and s[14, 14 + 10] == 0.0  # radius 9 for sigma 3


def test_elastic_field_shape_scale_and_determinism():
    b = get_backend("numpy")
    f1 = random_elastic_field(b.rng(3), 4, 8.0, 3.0, 28)
    f2 = random_elastic_field(b.rng(3), 4, 8.0, 3.0, 28)
    assert f1.shape == (4, 28, 28, 2) and f1.dtype == np.float64
    np.testing.assert_array_equal(f1, f2)
    half = random_elastic_field(b.rng(3), 4, 4.0, 3.0, 28)
    np.testing.assert_allclose(half, f1 / 2)
    assert 0.1 < np.abs(f1).max() < 8.0  # smoothing shrinks the noise


def test_constant_displacement_is_a_shift():
    """A field of (+2, -1) everywhere reads 2 pixels right and 1 up: content moves left 2
    and down 1, exactly as the inverse affine shift."""
    img = _images(n=2)
    disp = np.zeros((2, 28, 28, 2))
    disp[..., 0], disp[..., 1] = 2.0, -1.0
    ident = np.stack([affine_matrix(1.0, 0.0, 0, 0)] * 2)
    got = np.asarray(affine_resample(img, ident, disp))
    np.testing.assert_array_equal(got, _shift_zero_fill(img, -2, 1))
    with pytest.raises(ValueError, match="displacement must have shape"):
        affine_resample(img, ident, disp[:, :5])


def test_elastic_off_keeps_the_affine_stream_and_on_changes_it():
    img = _images(n=4)
    b = get_backend("numpy")
    plain = np.asarray(augment_batch(img, b.rng(5)))
    off = np.asarray(augment_batch(img, b.rng(5), elastic=(0.0, 3.0)))
    on = np.asarray(augment_batch(img, b.rng(5), elastic=(8.0, 3.0)))
    np.testing.assert_array_equal(off, plain)
    assert on.dtype == np.float32 and not np.array_equal(on, plain)
    assert on.min() >= 0.0 and on.max() <= 1.0 + 1e-6


def test_elastic_backends_agree():
    img = _images(n=4)
    outs = []
    for name in CPU_BACKENDS:
        b = get_backend(name)
        outs.append(b.to_host(augment_batch(b.from_host(img), b.rng(8), elastic=(8.0, 3.0))))
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=0, atol=1e-5)
