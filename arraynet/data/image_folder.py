"""An image folder as a dataset: `train/` and `test/`, one subfolder of PNG/JPEG per class.

Only PNG and JPEG are read (by content, whatever the file is called); a picture in another
format (GIF, TIFF, BMP, WebP ...) is refused rather than silently left out, and every
picture's size is checked from its header before it is decoded (at most MAX_PIXELS).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from arraynet.data.container import Data, DataError, from_arrays
from arraynet.io.images import FORMATS, MAX_PIXELS, picture_format

__all__ = ["IMAGE_SUFFIXES", "REFUSED_SUFFIXES", "load_image_folder", "probe"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Pictures in other formats: an error, not silently skipped (other files are ignored).
REFUSED_SUFFIXES = (".gif", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
                    ".pnm", ".ico", ".tga", ".jp2", ".j2k", ".heic", ".heif", ".avif", ".apng",
                    ".psd", ".pcx", ".xbm", ".xpm")  # fmt: skip
_GREY_MODES = ("1", "L", "LA", "La")
_COLOUR_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA")


def probe(path: Path) -> bool:
    """A folder with `train/` and `test/` subfolders."""
    return path.is_dir() and (path / "train").is_dir() and (path / "test").is_dir()


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "reading an image folder needs Pillow: install arraynet[image] "
            "(pip install 'arraynet[image]' or uv sync --extra image)"
        ) from None
    return Image


def _class_folders(split: Path) -> list[str]:
    return sorted(p.name for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path, shown: Path) -> list[Path]:
    """The PNG/JPEG files of a class folder; a picture in another format is a DataError."""
    files = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        suffix = p.suffix.lower()
        if suffix in REFUSED_SUFFIXES:
            raise DataError(
                f"{shown / p.name}: a {suffix[1:].upper()} image; image folders take PNG and "
                "JPEG only (convert it, or move it out of the folder)"
            )
        if suffix in IMAGE_SUFFIXES:
            files.append(p)
    return files


def _unaccepted(path: Path, shown: str, err: Exception) -> str:
    """The message for a file Pillow reads as neither PNG nor JPEG: its format when Pillow
    knows it (only the header is read), else that it is unreadable."""
    kind = picture_format(path)
    if kind:
        return f"{shown}: a {kind} image; image folders take PNG and JPEG only"
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{shown}: not a readable image ({text})"


def _check_size(
    shown: str, size: tuple[int, int], first: tuple[str, tuple[int, int]] | None
) -> None:
    """Refuse a picture (its (H, W) from the header) over MAX_PIXELS, or of another size
    than the first one read."""
    h, w = size
    if h * w > MAX_PIXELS:
        raise DataError(f"{shown}: {w}x{h} pixels, more than the {MAX_PIXELS:,} allowed")
    if first is not None and size != first[1]:
        raise DataError(
            f"{shown}: image is {h}x{w} (HxW) but {first[0]} is {first[1][0]}x{first[1][1]}; "
            "all images must share one size"
        )


def _read(
    Image: Any, path: Path, shown: str, first: tuple[str, tuple[int, int]] | None = None
) -> np.ndarray:
    """One PNG/JPEG image as uint8 (H, W) for grey or (H, W, 3) for colour (alpha dropped);
    its size is checked (`_check_size`) before it is decoded."""
    try:
        with warnings.catch_warnings():  # a huge picture is refused in one line
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as im:
                _check_size(shown, (im.height, im.width), first)
                im.load()
                mode = im.mode
                if mode in _GREY_MODES:
                    return np.asarray(im.convert("L"), dtype=np.uint8)
                if mode not in _COLOUR_MODES:
                    raise DataError(
                        f"{shown}: {mode} images are not supported (8-bit grey or colour only)"
                    )
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except DataError:
        raise
    except Image.UnidentifiedImageError as e:
        raise DataError(_unaccepted(path, shown, e)) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DataError(f"{shown}: more than the {MAX_PIXELS:,} pixels allowed") from None
    except (OSError, ValueError, SyntaxError) as e:
        text = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{shown}: not a readable image ({text})") from None
    if mode in ("P", "PA") and (rgb == rgb[..., :1]).all():
        return rgb[..., 0]  # a grey palette
    return rgb


def load_image_folder(folder: Path, name: str) -> Data:
    """Read `folder/train/CLASS/*` and `folder/test/CLASS/*` (PNG/JPEG) into a `Data`.

    Class indices follow the sorted class folder names, which must be the same in train/
    and test/. All images must share one size. Grey images give C=1; if any image is in
    colour, every image is converted to RGB (C=3); an alpha channel is dropped.
    """
    Image = _pillow()
    classes = _class_folders(folder / "train")
    test_classes = _class_folders(folder / "test")
    if not classes:
        raise DataError(f"{name}: train/ holds no class folders")
    if classes != test_classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        parts = [f"only in train/: {', '.join(only_train)}"] if only_train else []
        parts += [f"only in test/: {', '.join(only_test)}"] if only_test else []
        why = "; ".join(parts)
        raise DataError(f"{name}: train/ and test/ have different class folders ({why})")
    first: tuple[str, tuple[int, int]] | None = None
    splits: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    for split in ("train", "test"):
        images: list[np.ndarray] = []
        labels: list[int] = []
        for index, cls in enumerate(classes):
            files = _image_files(folder / split / cls, Path(name) / split / cls)
            if not files:
                raise DataError(f"{name}: {split}/{cls} holds no PNG/JPEG images")
            for path in files:
                shown = str(Path(name) / split / cls / path.name)
                img = _read(Image, path, shown, first)
                if first is None:
                    first = (shown, img.shape[:2])
                images.append(img)
                labels.append(index)
        splits[split] = (images, labels)
    colour = any(img.ndim == 3 for imgs, _ in splits.values() for img in imgs)
    arrays = {}
    for split, (images, labels) in splits.items():
        if colour:
            images = [np.repeat(i[..., None], 3, axis=2) if i.ndim == 2 else i for i in images]
        else:
            images = [i[..., None] for i in images]
        arrays[f"x_{split}"] = np.stack(images)
        arrays[f"y_{split}"] = np.asarray(labels, dtype=np.int64)
    return from_arrays(**arrays, name=name, class_names=classes)
