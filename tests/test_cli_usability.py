"""The command line as a newcomer meets it: --version, help that groups options and shows
examples that work, one-line command summaries, no `<type>` tags, a zoo table that fits
80 columns, shell completion, a readable recipe line, and default run folders that never
collide (runs/<model>-<time>, with runs/latest naming the newest)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

import arraynet
from arraynet.cli import app, rundirs
from arraynet.cli.models import describe_layers
from arraynet.cli.train import describe_recipe
from arraynet.train.recipe import Recipe
from tests.conftest import REPO

PANELS = ("Model & data", "Recipe", "Run folder & resume", "Hardware", "Scale-out", "Output")
WITH_EXAMPLES = [("train",), ("evaluate",), ("predict",), ("export",), ("serve",), ("bench",),
                 ("data", "fetch")]  # fmt: skip
TYPE_TAG = re.compile(
    r"(?i:<(?:int|str|bool|float|path|list|text)[^>]*>)|\b(?:INTEGER|TEXT|FLOAT|BOOLEAN|PATH)\b"
)


def cli(
    *args: str, cwd: Path = REPO, columns: int = 80, data_dir: Path | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns)}
    env.pop("TERMINAL_WIDTH", None)  # (typer's own width setting would win)
    if data_dir is not None:
        env["ARRAYNET_DATA"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "arraynet.cli", *args], capture_output=True, text=True, env=env,
        cwd=cwd, stdin=subprocess.DEVNULL, timeout=600,
    )  # fmt: skip


def command_paths() -> list[tuple[str, ...]]:
    """Every command, as the words that name it: ('train',), ('data', 'fetch') ..."""
    paths: list[tuple[str, ...]] = []
    for name, cmd in typer.main.get_command(app).commands.items():
        subs = getattr(cmd, "commands", None)
        paths += [(name, sub) for sub in subs] if subs else [(name,)]
    return paths


def command(path: tuple[str, ...]):
    cmd = typer.main.get_command(app)
    for word in path:
        cmd = cmd.commands[word]
    return cmd


def help_text(*path: str, columns: int = 80) -> str:
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)},
                             prog_name="arraynet")  # fmt: skip
    assert res.exit_code == 0, res.output
    return res.output


def examples_of(path: tuple[str, ...]) -> list[str]:
    """The command lines of a command's Examples block."""
    epilog = command(path).epilog or ""
    _, found, block = epilog.partition("Examples:[/]\n")
    return [line.strip() for line in block.splitlines() if line.strip()] if found else []


def panel_rows(text: str, title: str) -> list[str]:
    """The rows of a help panel: the text between its border bars."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"╭─ {title} "))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("╰"))
    return [line.strip("│").rstrip() for line in lines[start + 1 : end]]


# -- --version, completion -----------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    p = cli(flag)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"arraynet {arraynet.__version__}\n"


def test_help_without_a_terminal_offers_shell_completion():
    p = cli("--help")  # (stdin, stdout and stderr are no terminal here)
    assert p.returncode == 0, p.stderr
    assert "--install-completion" in p.stdout and "--show-completion" in p.stdout
    script = cli("--show-completion", "bash")
    assert script.returncode == 0, script.stderr
    assert "_ARRAYNET_COMPLETE" in script.stdout and "complete " in script.stdout


# -- help: panels, examples, no type tags, one-line summaries ------------------------------
def test_train_help_groups_its_options_and_ends_with_examples():
    text = help_text("train", columns=100)
    titles = re.findall(r"^╭─ (.+?) ─", text, re.M)
    assert titles == list(PANELS)  # (--help joins the last panel: no "Options" panel)
    rows = {p: " ".join(panel_rows(text, p)) for p in PANELS}
    assert "--lr RATE" in re.sub(r" +", " ", rows["Recipe"])
    assert "--resume" in rows["Run folder & resume"] and "--tf32" in rows["Hardware"]
    assert "--sync-bn" in rows["Scale-out"] and "--json" in rows["Output"]
    tail = text[text.index("Examples:") :].splitlines()
    assert sum(line.strip().startswith("arraynet train") for line in tail) >= 2


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_help_shows_no_type_tags(path):
    text = help_text(*path)
    assert TYPE_TAG.search(text) is None, TYPE_TAG.search(text)


def test_options_show_what_they_take():
    """`--epochs N`, `--lr RATE`, `--out DIR`; a flag shows nothing after its name."""
    text = re.sub(r" {2,}", "  ", help_text("train", columns=120))
    for shown in ("--epochs  N", "--lr  RATE", "--out  DIR", "--model  -m  MODEL"):
        assert shown in text, shown
    assert re.search(r"--resume  continue the run", text)
    assert re.search(r"--json  last line of stdout", text)


def test_the_check_for_type_tags_can_fail():
    assert TYPE_TAG.search("│ --epochs   <int>  epochs")
    assert TYPE_TAG.search("│ --epochs   INTEGER  epochs")
    assert TYPE_TAG.search("│ --epochs   N  epochs") is None
    assert TYPE_TAG.search("Print the folder path") is None


@pytest.mark.parametrize("group", [(), ("data",)], ids=["arraynet", "data"])
def test_each_command_summary_is_one_full_sentence(group):
    """At 80 columns every command's summary fits its one line and ends with a full stop."""
    p = cli(*group, "--help")
    assert p.returncode == 0, p.stderr
    rows = panel_rows(p.stdout, "Commands")
    names = list(command(group).commands) if group else list(typer.main.get_command(app).commands)
    assert [row.split()[0] for row in rows] == names  # (no continuation lines)
    for row in rows:
        assert row.endswith("."), row
        assert row.split()[1][0].isupper(), row


def test_main_commands_have_examples_that_parse():
    """2-4 examples each; each names real options (the command's own parser takes it) and
    only shipped weights files."""
    for path in WITH_EXAMPLES:
        lines = examples_of(path)
        assert 2 <= len(lines) <= 4, (path, lines)
        assert "Examples:" in help_text(*path)
        for line in lines:
            words = shlex.split(line, comments=True)
            while "=" in words[0]:  # an environment setting before the command
                words.pop(0)
            assert words[: 1 + len(path)] == ["arraynet", *path], line
            command(path).make_context(" ".join(path), words[1 + len(path) :])
            for w in words:
                if w.startswith("models/"):
                    assert (REPO / w).is_file(), line


def test_examples_check_can_fail():
    with pytest.raises(Exception, match="No such option: --epoch"):
        command(("train",)).make_context("train", ["--epoch", "3"])


# -- zoo -----------------------------------------------------------------------------------
def test_zoo_fits_80_columns():
    from arraynet.zoo import ZOO

    p = cli("zoo", columns=80)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 80
    assert len(lines) <= 2 + 2 * len(ZOO)  # a header and its rule, at most 2 lines a model
    starts = [line.split()[0] for line in lines[2:] if line[:1].strip()]
    assert starts == list(ZOO)
    wide = cli("zoo", columns=200)
    assert "shipped err (optimizer)" in wide.stdout  # the whole table where it fits


def test_layouts_in_short():
    assert describe_layers("C8 relu P D C16 relu P D F FC10 softmax") == (
        "conv 8/16, relu, pool, dropout"
    )
    assert describe_layers("F FC100 tanh FC50 tanh FC10 tanh") == "FC 100-50-10, tanh, tanh out"
    assert describe_layers("C32 BN relu C32 BN relu C64 BN relu D F FC10 softmax") == (
        "conv 32x2/64, relu, BN, dropout"
    )


# -- the recipe line -----------------------------------------------------------------------
def test_the_recipe_reads_as_a_sentence():
    r = Recipe(optimizer="adam", lr=0.001, batch_size=16, epochs=150, schedule="cosine",
               aug_p=0.5, augment={"zoom": [0.9, 1.1], "rotation": 10.0, "shift": 0.1},
               early_stopping=[0.005, 15])  # fmt: skip
    assert describe_recipe(r) == (
        "adam lr 0.001, batch 16, 150 epochs, cosine schedule, augment p=0.5 (zoom 0.9-1.1, "
        "rotation 10°, shift 0.1), early stopping 15 epochs / 0.5 %"
    )
    more = Recipe(epochs=1, warmup=2, ema=0.999, label_smoothing=0.1, monitor="val_loss",
                  augment={**Recipe().augment, "elastic": [34.0, 4.0]}, aug_p=1.0)  # fmt: skip
    text = describe_recipe(more)
    assert text.startswith("adam lr 0.001, batch 16, 1 epoch, const schedule, 2 warm-up epochs")
    for part in ("elastic alpha 34 sigma 4", "monitor val_loss", "label smoothing 0.1",
                 "EMA decay 0.999"):  # fmt: skip
        assert part in text
    assert "{" not in text and describe_recipe(Recipe()).endswith("no augmentation")


# -- default run folders -------------------------------------------------------------------
def test_new_folders_never_collide(tmp_path, monkeypatch):
    monkeypatch.setattr(rundirs, "stamp", lambda t=None: "20250101-120000")
    a = rundirs.new_folder(tmp_path / "runs", "m9")
    b = rundirs.new_folder(tmp_path / "runs", "m9")
    assert (a.name, b.name) == ("m9-20250101-120000", "m9-20250101-120000-2")
    assert a.is_dir() and b.is_dir()
    assert rundirs.new_folder(tmp_path, "my layout/x").name == "my-layout-x-20250101-120000"


def test_latest_is_a_relative_link_replaced_whole(tmp_path):
    root = tmp_path / "runs"
    a, b = rundirs.new_folder(root, "a"), rundirs.new_folder(root, "b")
    assert rundirs.latest(root) is None
    rundirs.point_latest(a)
    rundirs.point_latest(b)
    link = root / "latest"
    assert link.is_symlink() and os.readlink(link) == b.name  # (relative: moves with runs/)
    assert rundirs.latest(root) == b
    assert sorted(p.name for p in root.iterdir()) == sorted([a.name, b.name, "latest"])


def test_latest_is_a_file_where_links_cannot_be_made(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError("symbolic links are not supported here")

    monkeypatch.setattr(rundirs.os, "symlink", no_links)
    root = tmp_path / "runs"
    a, b = rundirs.new_folder(root, "a"), rundirs.new_folder(root, "b")
    rundirs.point_latest(a)
    rundirs.point_latest(b)
    assert (root / "latest").read_text().strip() == b.name and rundirs.latest(root) == b
    assert sorted(p.name for p in root.iterdir()) == sorted([a.name, b.name, "latest"])


def test_an_old_latest_run_folder_is_kept(tmp_path):
    """Before, runs/latest was a run folder itself: it is renamed, not lost."""
    root = tmp_path / "runs"
    (root / "latest").mkdir(parents=True)
    (root / "latest" / "state.json").write_text("{}")
    assert rundirs.latest(root) == root / "latest"  # (a resume continues it)
    new = rundirs.new_folder(root, "m9")
    moved = rundirs.point_latest(new)
    assert moved is not None and moved.name.startswith("latest-")
    assert (moved / "state.json").read_text() == "{}"
    assert rundirs.latest(root) == new


def test_resume_without_a_run_is_one_line(tmp_path):
    p = cli("train", "--resume", cwd=tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.splitlines() == [
        "arraynet: error: nothing to resume: no runs/latest; give the run's folder with --out"
    ]


def test_a_run_that_fails_early_leaves_no_folder(tmp_path, data_dir):
    p = cli("train", "-m", "m3", "--val-split", "70000", cwd=tmp_path, data_dir=data_dir)
    assert p.returncode == 1 and "--val-split must be between" in p.stderr
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.slow
def test_two_runs_without_out_and_a_resume(tmp_path, data_dir):
    """The second run goes to a new folder (the first is kept), runs/latest names it, and
    `--resume` alone continues it: same model, data settings and folder."""
    args = ("train", "-m", "m3", "--epochs", "1", "--train-limit", "64", "--json")
    first, second = (cli(*args, cwd=tmp_path, data_dir=data_dir) for _ in range(2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = (json.loads(p.stdout.splitlines()[-1])["out"] for p in (first, second))
    assert a != b and Path(a).parent == Path(b).parent == Path("runs")
    assert (tmp_path / a / "model.safetensors").is_file()
    assert (tmp_path / b / "model.safetensors").is_file()
    assert rundirs.latest(tmp_path / "runs") == tmp_path / b
    header = second.stderr.splitlines()  # (--json: the human lines go to stderr)
    assert header[0].endswith(f"run folder {b}")
    assert header[1] == "recipe: sgd lr 0.1, batch 32, 1 epoch, const schedule, no augmentation"
    more = cli("train", "--resume", "--epochs", "2", "--json", cwd=tmp_path, data_dir=data_dir)
    assert more.returncode == 0, more.stderr
    res = json.loads(more.stdout.splitlines()[-1])
    assert res["out"] == b and res["epochs_run"] == 2 and res["model"] == "m3"
    assert json.loads((tmp_path / a / "state.json").read_text())["epoch"] == 1
    assert json.loads((tmp_path / b / "state.json").read_text())["epoch"] == 2


def test_a_sweep_without_out_gets_a_new_folder(tmp_path, monkeypatch):
    """sweeps/<name>-<time>, named by sweeps/latest once its plan stands; a plan that
    fails leaves nothing behind; --out is used as given."""
    from arraynet.cli.tools import planned_sweep

    monkeypatch.chdir(tmp_path)
    seen: list[Path] = []
    trials, out = planned_sweep(lambda to: seen.append(to) or ["t"], None, "m4")
    assert trials == ["t"] and seen == [out] and out.parent == Path("sweeps") and out.is_dir()
    assert out.name.startswith("m4-") and rundirs.latest(Path("sweeps")) == out

    def bad_plan(to: Path) -> list:
        raise ValueError("unknown model")

    with pytest.raises(ValueError):
        planned_sweep(bad_plan, None, "m99")
    assert sorted(p.name for p in Path("sweeps").iterdir()) == sorted([out.name, "latest"])
    assert rundirs.latest(Path("sweeps")) == out
    assert planned_sweep(lambda to: [to], Path("mine"), "m4") == ([Path("mine")], Path("mine"))
