"""Public names keep working after the restructuring into packages: the top-level API
(`import arraynet as an`), the CLI, and every old module path with the names it defined
(the table is the modules as they were at 63d30a0, before the move)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import arraynet as an

OLD_NAMES = {
    "arraynet.averaging": ["Array", "WeightAverage", "recalibrate_batchnorm"],
    "arraynet.callbacks": [
        "CSVLogger",
        "Callback",
        "EarlyStopping",
        "Hooks",
        "ModelCheckpoint",
        "Progress",
        "SWA",
        "TensorBoard",
        "check_writable_dir",
        "check_writable_file",
        "format_row",
        "recipe_callbacks",
        "write_history_csv",
    ],
    "arraynet.distill": [
        "Array",
        "check_teacher",
        "describe_teacher",
        "distillation_targets",
        "teacher_probabilities",
    ],
    "arraynet.early_stopping": ["EarlyStopping"],
    "arraynet.fitting": [
        "Array",
        "FIT_RECIPE",
        "device_inputs",
        "ensure_built",
        "evaluate_arrays",
        "fit",
        "to_dataset",
    ],
    "arraynet.recipes": ["FLAGS", "MONITORS", "Recipe", "recipe_for"],
    "arraynet.runfolder": ["RUN_FILES", "RunFolder", "Training"],
    "arraynet.step": [
        "Array",
        "GradHook",
        "WeightEMA",
        "device_step",
        "prepare_step",
        "train_step",
    ],
    "arraynet.training": [
        "Array",
        "Dataset",
        "EpochSavedError",
        "RNG_KINDS",
        "Training",
        "TrainingDiverged",
        "evaluate",
        "fit_loop",
        "run_epoch",
    ],
    "arraynet.data_parallel": [
        "Array",
        "DataParallel",
        "LinearScaling",
        "check_resume_ranks",
        "lr_scaling_for",
    ],
    "arraynet.backends.comm": [
        "ABORT_GRACE_S",
        "COMM_KINDS",
        "CommError",
        "Communicator",
        "DEFAULT_TIMEOUT_S",
        "MPIComm",
        "NCCLComm",
        "SingleProcess",
        "active_world",
        "comm_timeout",
        "launcher_world",
        "probe_comm",
        "rank_seed",
        "world",
    ],
    "arraynet.data.sharding": ["epoch_batches"],
    "arraynet.layouts": [
        "KEYS",
        "is_layout_file",
        "model_and_recipe",
        "model_factory",
        "new_model",
        "read_layout",
        "recipe_from_dict",
        "zoo_layout",
    ],
    "arraynet.run": ["RUN_FILES", "evaluate_weights", "make_dataset", "train_model"],
    "arraynet.ops": [
        "channel_sum64",
        "clip",
        "column_sum",
        "flipped_kernel",
        "im2col",
        "input_grad_operand",
        "log_softmax",
        "maxpool_backward",
        "maxpool_forward",
        "pad_hw",
        "softmax",
        "strided_input_grad",
    ],
    "arraynet.zoo": [
        "CONV_INIT",
        "MNIST_SHAPE",
        "ZooEntry",
        "build_layout",
        "entry",
        "m1",
        "m10",
        "m11",
        "m12",
        "m13",
        "m14",
        "m2",
        "m3",
        "m4",
        "m5",
        "m6",
        "m7",
        "m8",
        "m9",
    ],
    "arraynet.model": ["Array", "LOSS_NAMES", "MAX_LAYERS", "Sequential", "state_misfit"],
}


@pytest.mark.parametrize("module", sorted(OLD_NAMES))
def test_an_old_module_path_still_imports_its_names(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        mod = importlib.import_module(module)
        missing = [n for n in OLD_NAMES[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lost {missing}"


def test_an_old_path_is_the_new_module_not_a_copy():
    import arraynet.fitting
    import arraynet.training
    from arraynet.callbacks import EarlyStopping

    import arraynet.train.callbacks
    from arraynet.train.loop import Training

    assert EarlyStopping is arraynet.train.callbacks.EarlyStopping
    assert arraynet.training.Training is Training
    assert arraynet.fitting.fit is importlib.import_module("arraynet.train.fit").fit


def test_the_top_level_api():
    from arraynet.model import Sequential

    assert an.Sequential is Sequential
    assert callable(an.load_model) and callable(an.get_backend)
    assert an.datasets.load is importlib.import_module("arraynet.data.sources").load
    for name in ("Dense", "Conv2D", "MaxPool2D", "BatchNorm", "Dropout", "Flatten", "Activation"):
        assert isinstance(getattr(an.layers, name), type)
    for name in ("Callback", "EarlyStopping", "ModelCheckpoint", "CSVLogger", "Progress"):
        assert isinstance(getattr(an.callbacks, name), type)
    assert an.Recipe().epochs > 0
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        an.nonsense  # noqa: B018


def test_an_unknown_old_name_is_an_attribute_error():
    import arraynet.recipes

    with pytest.raises(AttributeError, match=r"arraynet\.recipes"):
        arraynet.recipes.nonsense  # noqa: B018


def test_the_old_early_stopping_class_warns_and_is_the_window():
    import arraynet.early_stopping

    from arraynet.train.early_stopping import StoppingWindow

    with pytest.warns(DeprecationWarning, match="StoppingWindow"):
        assert arraynet.early_stopping.EarlyStopping is StoppingWindow


def test_the_cli_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "arraynet.cli", "--help"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and "train" in out.stdout
