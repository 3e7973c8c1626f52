"""`arraynet train`'s recipe options stay tied to `Recipe`: each one names a real field,
`train` has each, none restates a recipe default, and early stopping's fallbacks are
the training loop's EarlyStopping's own."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping

import click
import pytest
import typer.main

from arraynet.cli import app
from arraynet.cli import train as train_module
from arraynet.cli.train import FIELD_OPTIONS, PART_OPTIONS, RECIPE_OPTIONS
from arraynet.train import callbacks
from arraynet.train.recipe import FLAGS, Recipe

RECIPE_FIELDS = {f.name: f for f in dataclasses.fields(Recipe)}


def option_types(command: Callable, name: str) -> set[type]:
    """The Python types an option of `command` takes, None aside."""
    hint = typing.get_type_hints(command, include_extras=True)[name]
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    return set(typing.get_args(base) or (base,)) - {types.NoneType}


def click_params(command_name: str) -> dict[str, click.Parameter]:
    group = typer.main.get_command(app)
    command = group.get_command(click.Context(group), command_name)
    return {p.name: p for p in command.params}


def problems(table: Mapping[str, str], command: Callable, params: dict) -> list[str]:
    """What is wrong between a table of recipe options and the command that takes them."""
    found = []
    signature = inspect.signature(command).parameters
    defaults = Recipe()
    for option, field in table.items():
        if field not in RECIPE_FIELDS:
            found.append(f"{option}: {field!r} is no Recipe field")
            continue
        if option not in signature or option not in params:
            found.append(f"{option}: `train` has no such option")
            continue
        if signature[option].default is not None or params[option].default is not None:
            found.append(f"{option}: its default must be None (the recipe's)")
        help_text = params[option].help or ""
        if "default" in help_text and "default: the recipe's" not in help_text:
            found.append(f"{option}: its help restates a default: {help_text!r}")
        if option == field and type(getattr(defaults, field)) not in option_types(command, option):
            found.append(f"{option}: takes {option_types(command, option)}, the field a "
                         f"{type(getattr(defaults, field)).__name__}")  # fmt: skip
    return found


def test_every_recipe_option_is_a_recipe_field_that_train_takes():
    assert problems(RECIPE_OPTIONS, train_module.train, click_params("train")) == []


def test_the_check_fails_for_a_bad_table():
    """The check above can fail: a name that is no field, an option train lacks."""
    params = click_params("train")
    bad = {"epochs": "epoch", "momentum": "momentum", "seed": "epochs"}
    assert len(problems(bad, train_module.train, params)) == 3


def test_every_train_option_named_like_a_recipe_field_is_in_the_table():
    """A new option overriding a Recipe field goes through the table."""
    signature = inspect.signature(train_module.train).parameters
    assert {n for n in signature if n in RECIPE_FIELDS} <= set(FIELD_OPTIONS)
    assert all(FIELD_OPTIONS[n] == n for n in FIELD_OPTIONS)  # (the option is the field)


def test_the_table_is_the_flags_recipe_errors_name():
    """Recipe.validate names a setting by its flag exactly when it is in FLAGS."""
    assert set(RECIPE_OPTIONS) == set(FLAGS)


def test_part_options_take_the_early_stopping_types():
    es = inspect.signature(callbacks.EarlyStopping).parameters
    for option in ("min_delta", "patience"):
        assert PART_OPTIONS[option] == "early_stopping"
        assert type(es[option].default) in option_types(train_module.train, option)
    assert PART_OPTIONS["elastic"] == "augment"
    assert option_types(train_module.train, "elastic") == {str}


def test_options_left_out_keep_the_recipe():
    base = Recipe(early_stopping=[0.01, 9], augment={**Recipe().augment, "elastic": [34, 4]})
    assert train_module.recipe_from_options(base, dict.fromkeys(RECIPE_OPTIONS)) == base


@pytest.mark.parametrize("option", sorted(FIELD_OPTIONS))
def test_each_field_option_sets_its_field(option):
    field = FIELD_OPTIONS[option]
    default = getattr(Recipe(), field)
    value = "x" if isinstance(default, str) else default + 3  # (a str, int or float)
    options = {**dict.fromkeys(RECIPE_OPTIONS), option: value}
    recipe = train_module.recipe_from_options(Recipe(), options)
    assert recipe == dataclasses.replace(Recipe(), **{field: value})


def early_stopping_of(base: Recipe, **given: object) -> list | None:
    options = {**dict.fromkeys(RECIPE_OPTIONS), **given}
    return train_module.recipe_from_options(base, options).early_stopping


def test_early_stopping_fallbacks_are_the_callbacks(monkeypatch):
    """What neither the flag nor the recipe gives comes from EarlyStopping's signature."""

    class Other(callbacks.EarlyStopping):
        def __init__(self, patience: int = 7, min_delta: float = 0.125, monitor: str = "x"):
            super().__init__(patience, min_delta, monitor)

    monkeypatch.setattr(callbacks, "EarlyStopping", Other)
    assert early_stopping_of(Recipe(), patience=4) == [0.125, 4]
    assert early_stopping_of(Recipe(), min_delta=0.5) == [0.5, 7]
    assert early_stopping_of(Recipe(early_stopping=[0.01, 9]), patience=3) == [0.01, 3]
    assert early_stopping_of(Recipe(early_stopping=[0.01, 9]), patience=0) is None
    assert early_stopping_of(Recipe(early_stopping=[0.01, 9])) == [0.01, 9]
