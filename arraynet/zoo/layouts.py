"""Layout files: a model's layers (each layer's `config()`, as weights files keep them), its
input shape and, optionally, its training recipe, as JSON:

    {"input_shape": [8, 8, 1],
     "layers": [{"type": "conv2d", "filters": 8, "kernel_size": 3}, ...],
     "recipe": {"lr": 0.001, "batch_size": 32, "epochs": 10}}

`arraynet zoo --export m12` writes one for a zoo entry; `arraynet train --model FILE`
trains one. "input_shape" may be null (taken from the data); recipe settings left out
keep their defaults (`arraynet.train.recipe.Recipe`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from arraynet.files import one_line
from arraynet.model import Sequential
from arraynet.train.recipe import Recipe

KEYS = ("name", "input_shape", "layers", "recipe")


def is_layout_file(model: str) -> bool:
    """True when --model names a file (a .json name, or any existing file)."""
    return model.endswith(".json") or Path(model).is_file()


def read_layout(path: str | Path) -> tuple[str, dict, Recipe | None]:
    """(name, layout config, recipe or None) from a layout file; every problem is one
    ValueError line naming the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such layout file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON layout ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list) or not doc["layers"]:
        raise ValueError(f"{path}: a layout file is a JSON object with a list of 'layers'")
    unknown = sorted(set(doc) - set(KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r} (a layout has {', '.join(KEYS)})")
    cfg = {"input_shape": doc.get("input_shape"), "layers": doc["layers"]}
    shape = cfg["input_shape"]
    if shape is not None and (
        not isinstance(shape, list) or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):  # fmt: skip
        raise ValueError(f"{path}: input_shape wants a list of positive sizes or null, not {shape}")
    try:
        Sequential.from_config(cfg)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad layer ({one_line(e)})") from None
    recipe = None
    if doc.get("recipe") is not None:
        recipe = recipe_from_dict(doc["recipe"], path)
    return str(doc.get("name") or path.stem), cfg, recipe


def model_and_recipe(model: str) -> tuple[str, dict | None, Recipe]:
    """A `--model` value: (name, layout or None for a zoo entry, base recipe). A layout
    file brings its own recipe (the default one when it has none); a zoo entry its seed
    recipe."""
    from arraynet.zoo import recipe_for

    if is_layout_file(model):
        name, layout, file_recipe = read_layout(model)
        return name, layout, file_recipe or Recipe()
    return model, None, recipe_for(model)


def model_factory(model: str) -> tuple[str, Callable[[], Sequential], Recipe]:
    """A `--model` value (a zoo entry or a layout file) as (name, a function that makes a
    fresh unbuilt model, base recipe): what bench and parity need."""
    name, layout, recipe = model_and_recipe(model)
    return name, lambda: new_model(name, layout), recipe


def new_model(name: str, layout: dict | None) -> Sequential:
    """A fresh unbuilt model: the layout's, or zoo entry `name`'s when layout is None."""
    if layout is None:
        from arraynet.zoo import build_layout

        return build_layout(name)
    return Sequential.from_config(layout)


def recipe_from_dict(d: object, where: str | Path) -> Recipe:
    """A recipe from a mapping of its settings; unknown settings are refused (a typo would
    otherwise be silently ignored), the values are checked by Recipe.validate."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: 'recipe' wants a mapping of settings, not {d!r}")
    names = [f.name for f in fields(Recipe)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown recipe setting {unknown[0]!r} "
                         f"(settings: {', '.join(names)})")  # fmt: skip
    try:
        return Recipe(**d).validate()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: recipe: {one_line(e)}") from None


def zoo_layout(name: str) -> dict:
    """The layout file of zoo entry `name` (layers, input shape and seed recipe)."""
    from arraynet.zoo import entry

    e = entry(name)
    cfg = e.layout().config()
    return {"name": name, **cfg, "recipe": e.recipe.to_dict()}
