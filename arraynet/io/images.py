"""Reading a user's digit image and fitting it into a 28x28 MNIST-like frame."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from arraynet.data.arrays import uint8_to_float32

#: The most pixels a picture may have (`arraynet predict` and image folders; the server's
#: own MAX_PIXELS is the same), checked from the header before anything is decoded.
MAX_PIXELS = 4096 * 4096
#: The picture formats a digit is read from (Pillow's format names).
FORMATS: tuple[str, ...] = ("PNG", "JPEG")


class ImageError(ValueError):
    """An image that cannot be read or holds no digit. `reason` is one of 'empty',
    'format' (not an accepted kind of picture), 'size' (too many pixels), 'unreadable'
    (corrupt or missing) and 'blank' (no ink)."""

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason


def _grey(im) -> np.ndarray:
    """Luminance in [0, 1]. Transparent pixels take the shade that contrasts with the
    opaque ones (dark ink on a transparent background is put on white); 32-bit integer
    and float pictures are scaled by their own range."""
    if im.mode in ("F", "I", "I;16", "I;16B", "I;16L"):
        a = np.asarray(im, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if "A" in im.getbands() or "transparency" in im.info:
        la = uint8_to_float32(np.asarray(im.convert("LA")))
        lum, alpha = la[..., 0], la[..., 1]
        weight = float(alpha.sum())  # the opaque pixels' mean shade, weighted by opacity
        ink = float((lum * alpha).sum()) / weight if weight > 0 else 1.0
        bg = 1.0 if ink < 0.5 else 0.0
        return lum * alpha + bg * (1.0 - alpha)
    return uint8_to_float32(np.asarray(im.convert("L")))


def load_digit(
    path: str | Path,
    formats: tuple[str, ...] | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> np.ndarray:
    """A digit picture file as float32 (1, 28, 28, 1) in [0, 1], white ink on black (see
    `digit_from_bytes`). A picture of more than `max_pixels` pixels, or not in `formats`
    (`arraynet predict` passes FORMATS: PNG and JPEG; None: any Pillow reads), is refused
    from its header, before decoding (ImageError naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: not a readable image ({e.strerror or e})") from None
    return digit_from_bytes(data, str(path), formats, max_pixels)


def digit_from_bytes(
    data: bytes,
    label: str = "image",
    formats: tuple[str, ...] | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """An encoded digit picture as float32 (1, 28, 28, 1) in [0, 1], white ink on black.

    Greyscale; inverted when the picture is dark ink on a light background; cropped to the
    ink, scaled so its longer side is 20 pixels, and centred by its centre of mass in a
    28x28 frame, as the MNIST digits were made. `label` names the picture in errors;
    `formats` (e.g. ("PNG", "JPEG")) and `max_pixels` refuse anything else before decoding.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:
        raise ImageError("reading images needs Pillow: `uv sync --extra image`") from e
    if not data:
        raise ImageError(f"{label}: empty (no image data)", "empty")
    try:
        with warnings.catch_warnings():  # a huge picture is refused below, in one line
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=formats) as im:
                if max_pixels is not None and im.width * im.height > max_pixels:
                    raise ImageError(
                        f"{label}: {im.width}x{im.height} pixels, more than the "
                        f"{max_pixels:,} allowed",
                        "size",
                    )
                im.load()
                grey = _grey(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(_unidentified(data, label, formats), "format") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        limit = max_pixels or Image.MAX_IMAGE_PIXELS
        raise ImageError(f"{label}: more than the {limit:,} pixels allowed", "size") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{label}: not a readable image ({e})") from None
    # The background is the most common value along the border.
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    bg = float(np.median(border))
    if bg > 0.5:
        grey, bg = 1.0 - grey, 1.0 - bg
    grey = np.clip((grey - bg) / max(1.0 - bg, 1e-6), 0.0, 1.0)
    ink = grey > 0.1
    if not ink.any():
        raise ImageError(f"{label}: no digit found (the image is blank)", "blank")
    rows, cols = np.nonzero(ink)
    crop = grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray((crop * 255).astype(np.uint8)).resize((nw, nh), Image.LANCZOS)
    small = uint8_to_float32(np.asarray(small))
    frame = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - nh) // 2, (28 - nw) // 2
    frame[top : top + nh, left : left + nw] = small
    total = frame.sum()
    if total > 0:
        yy, xx = np.indices(frame.shape)
        cy, cx = (yy * frame).sum() / total, (xx * frame).sum() / total
        dy, dx = round(13.5 - cy), round(13.5 - cx)
        frame = _shift(frame, dy, dx)
    return frame[None, :, :, None]


def picture_format(source: Any) -> str | None:
    """The format Pillow reads `source` (a path or bytes) as, from its header alone
    ('GIF', 'TIFF' ...), or None when Pillow reads it as no picture at all."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            return im.format
    except Exception:  # garbage, or a picture Pillow cannot open
        return None


def _unidentified(data: bytes, label: str, formats: tuple[str, ...] | None) -> str:
    """Why Pillow did not open `data`: another kind of picture than `formats`, or none."""
    if formats:
        kinds = " or ".join(formats)
        kind = picture_format(data)
        if kind:
            return f"{label}: not a {kinds} image (a {kind} image)"
        return f"{label}: not a readable image (not a {kinds} image)"
    return f"{label}: not a readable image"


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(a)
    h, w = a.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = a[ys, xs]
    return out


def preview_png(x: Any) -> str:
    """The model's (1, 28, 28, 1) input as a data-URL PNG, 8-bit grey: value x 255, which
    is exact for the preprocessed digits (their values are k / 255)."""
    import base64

    from PIL import Image

    a = np.asarray(x, dtype=np.float32).reshape(x.shape[1], x.shape[2])
    grey = np.rint(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey, "L").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
