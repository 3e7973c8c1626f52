"""An image folder as a dataset: `train/` and `test/`, one subfolder of PNG/JPEG per class."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from arraynet.data.mnist import DataError
from arraynet.data.sources import Data, from_arrays

__all__ = ["IMAGE_SUFFIXES", "load_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GREY_MODES = ("1", "L", "LA", "La")
_COLOUR_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA")


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


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _read(Image: Any, path: Path, shown: str) -> np.ndarray:
    """One image as uint8 (H, W) for grey or (H, W, 3) for colour (alpha dropped)."""
    try:
        with warnings.catch_warnings():  # a huge picture is refused in one line
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
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
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as e:  # fmt: skip
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
            files = _image_files(folder / split / cls)
            if not files:
                raise DataError(f"{name}: {split}/{cls} holds no PNG/JPEG images")
            for path in files:
                shown = str(Path(name) / split / cls / path.name)
                img = _read(Image, path, shown)
                size = img.shape[:2]
                if first is None:
                    first = (shown, size)
                elif size != first[1]:
                    raise DataError(
                        f"{shown}: image is {size[0]}x{size[1]} (HxW) but {first[0]} "
                        f"is {first[1][0]}x{first[1][1]}; all images must share one size"
                    )
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
