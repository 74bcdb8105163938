#!/usr/bin/env python3
"""Writes PyTorch Lightning's hook ENTRY order to tests/data/lightning_hook_entry_order.txt.

Run it through `bash scripts/lightning_hook_trace.sh`, which makes the virtual environment with the
pinned torch and pytorch-lightning. `tests/hook_order.rs` compares the Rust trainer with the file.

The configurations are those of Lightning's `tests/tests_pytorch/models/test_hooks.py`
(`test_trainer_model_hook_system_fit`, `..._eval`, `..._predict`, `test_trainer_datamodule_hook_system`),
plus a few flags that change the order (sanity check off, validation twice per epoch, no training
batches, no validation step, `on_*_model_train` implemented) and two validation, test and predict
dataloaders. As in test_hooks.py, every public
method of `LightningModule` (less `optimizers`, `log`, `log_dict` and the `torch.nn.Module` methods
other than `forward`, `zero_grad` and `train`), of `Callback` and of `LightningDataModule` is wrapped
on the instance; the wrapper keeps `__wrapped__`, so Lightning's `is_overridden` still sees what
the class implements. Lightning 2.6 calls `prepare_data`, `configure_model` and
`on_{validation,test}_model_train` only when they are implemented: like test_hooks.py, the hooked
module and datamodule implement the first two, and the module implements the last two only in the
`on_*_model_train` sections (test_hooks.py's `override_on_..._model_train` parameter).

Output format, one section per configuration:

    #### <name> (<batches>)
    <hook>              a LightningModule hook (or `forward`, `train`, `zero_grad`, ...)
    Callback.<hook>     a hook of the traced callback
    DM.<hook>           a hook of the traced datamodule

A line is written when the hook is ENTERED; calls made while a traced hook runs are indented by two
spaces per level (`optimizer_step` runs `training_step`, `on_validation_model_eval` runs `train`).
Lightning's own test records hooks when they return, so its lists differ in exactly that way.
In the `... arguments` sections, the hooks whose arguments test_hooks.py checks also show them:
`setup stage=fit`, `on_train_batch_start batch_idx=0`, `optimizer_step epoch=0 batch_idx=1`, and
`dataloader_idx` where Lightning passes it (`validation_step batch_idx=0 dataloader_idx=1`).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
import platform
import sys
import tempfile
import warnings
from inspect import getmembers, isfunction
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning import Callback, LightningDataModule, LightningModule, Trainer
from pytorch_lightning.demos.boring_classes import BoringDataModule, BoringModel

# Which arguments each hook shows in the `arguments` sections, as (name, position when passed
# positionally, counted without `self`). Callback hooks take `trainer, pl_module` first.
ARGUMENTS: dict[str, tuple[tuple[str, int], ...]] = {
    "setup": (("stage", 0),),
    "teardown": (("stage", 0),),
    "on_before_batch_transfer": (("dataloader_idx", 1),),
    "transfer_batch_to_device": (("dataloader_idx", 2),),
    "on_after_batch_transfer": (("dataloader_idx", 1),),
    "training_step": (("batch_idx", 1),),
    "validation_step": (("batch_idx", 1),),
    "test_step": (("batch_idx", 1),),
    "predict_step": (("batch_idx", 1),),
    "optimizer_zero_grad": (("epoch", 0), ("batch_idx", 1)),
    "optimizer_step": (("epoch", 0), ("batch_idx", 1)),
    **{f"on_{loop}_batch_start": (("batch_idx", 1),) for loop in ("train", "validation", "test", "predict")},
    **{f"on_{loop}_batch_end": (("batch_idx", 2),) for loop in ("train", "validation", "test", "predict")},
}
# Shown only when Lightning passes them: `dataloader_idx` goes to the evaluation and predict batch
# hooks and steps when their loop has several dataloaders.
OPTIONAL_ARGUMENTS: dict[str, tuple[tuple[str, int], ...]] = {
    **{f"{loop}_step": (("dataloader_idx", 2),) for loop in ("validation", "test", "predict")},
    **{f"on_{loop}_batch_start": (("dataloader_idx", 2),) for loop in ("validation", "test", "predict")},
    **{f"on_{loop}_batch_end": (("dataloader_idx", 3),) for loop in ("validation", "test", "predict")},
}
CALLBACK_LEADING_ARGS = 2  # trainer, pl_module


class Trace:
    """The hook calls of one run, in entry order, indented by nesting depth."""

    def __init__(self, with_arguments: bool) -> None:
        self.lines: list[str] = []
        self.depth = 0
        self.with_arguments = with_arguments

    def record(self, label: str) -> None:
        self.lines.append("  " * self.depth + label)

    def wrap(self, label: str, hook: str, fn: Callable[..., Any], leading: int = 0) -> Callable[..., Any]:
        """`fn` (a bound method), recording `label` on entry."""

        def traced(*args: Any, **kwargs: Any) -> Any:
            self.record(label + (self.arguments(hook, fn, args, kwargs, leading) if self.with_arguments else ""))
            self.depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1

        # Sets `__wrapped__`: `is_overridden` and `inspect.signature` look through the wrapper.
        functools.update_wrapper(traced, fn)
        return traced

    @staticmethod
    def arguments(hook: str, fn: Callable[..., Any], args: tuple, kwargs: dict, leading: int) -> str:
        wanted = ARGUMENTS.get(hook)
        if not wanted:
            return ""
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs).arguments
        except TypeError:
            bound = {}
        shown = []
        for name, position in wanted:
            if name in bound:
                value = bound[name]
            elif name in kwargs:
                value = kwargs[name]
            elif len(args) > leading + position:
                value = args[leading + position]
            else:
                value = "<default>"
            value = getattr(value, "value", value)  # TrainerFn is a str enum: show "fit"
            shown.append(f"{name}={value}")
        for name, position in OPTIONAL_ARGUMENTS.get(hook, ()):
            if name in bound or name in kwargs or len(args) > leading + position:
                value = bound.get(name, kwargs.get(name, args[leading + position] if len(args) > leading + position else None))
                shown.append(f"{name}={value}")
        return " " + " ".join(shown)


def public_functions(cls: type) -> set[str]:
    return {name for name, _ in getmembers(cls, predicate=isfunction) if not name.startswith("_")}


def module_hooks() -> set[str]:
    hooks = public_functions(LightningModule) - {"optimizers", "log", "log_dict"}
    return hooks - (public_functions(torch.nn.Module) - {"forward", "zero_grad", "train"})


class HookedModel(BoringModel):
    """test_hooks.py's HookedModel: BoringModel (SGD 0.1, StepLR per epoch) with every hook traced.

    Lightning calls some hooks only when the module implements them; as in test_hooks.py, this
    model implements them, and `model_train=False` removes `on_{validation,test}_model_train`
    again (test_hooks.py's `override_on_..._model_train=False`), which is what the plain sections use.
    """

    def __init__(self, trace: Trace, model_train: bool = False) -> None:
        super().__init__()
        self.trace = trace
        for hook in module_hooks():
            setattr(self, hook, trace.wrap(hook, hook, getattr(self, hook)))
        if not model_train:
            self.on_validation_model_train = None
            self.on_test_model_train = None

    # Implemented so that Lightning calls them, as in test_hooks.py.
    def configure_model(self) -> None:
        pass

    def prepare_data(self) -> None:
        pass

    def on_validation_model_train(self) -> None:
        pass

    def on_test_model_train(self) -> None:
        pass

    def on_predict_model_train(self) -> None:
        pass


class ManualModel(HookedModel):
    """test_hooks.py's manual-optimization variant of HookedModel."""

    def __init__(self, trace: Trace) -> None:
        super().__init__(trace)
        self.automatic_optimization = False

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = self.step(batch[0])
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step(lambda: self.trace.record("closure"))
        return {"loss": loss}


class TwoDataloadersModel(HookedModel):
    """HookedModel with two validation, test and predict dataloaders; its steps take
    `dataloader_idx`, which Lightning requires with several dataloaders."""

    def val_dataloader(self) -> list[Any]:
        return [super().val_dataloader(), super().val_dataloader()]

    def test_dataloader(self) -> list[Any]:
        return [super().test_dataloader(), super().test_dataloader()]

    def predict_dataloader(self) -> list[Any]:
        return [super().predict_dataloader(), super().predict_dataloader()]

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        return super().validation_step(batch, batch_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        return super().test_step(batch, batch_idx)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        return super().predict_step(batch, batch_idx)


def model_train_model(trace: Trace) -> HookedModel:
    """HookedModel that implements `on_validation_model_train` and `on_test_model_train`."""
    return HookedModel(trace, model_train=True)


class HookedCallback(Callback):
    """test_hooks.py's HookedCallback: every Callback hook traced as `Callback.<hook>`."""

    def __init__(self, trace: Trace) -> None:
        for hook in public_functions(Callback):
            setattr(self, hook, trace.wrap(f"Callback.{hook}", hook, getattr(self, hook), CALLBACK_LEADING_ARGS))

    def state_dict(self) -> dict[str, Any]:
        return {"foo": True}


class HookedDataModule(BoringDataModule):
    """test_hooks.py's HookedDataModule: every LightningDataModule hook traced as `DM.<hook>`."""

    def __init__(self, trace: Trace) -> None:
        super().__init__()
        for hook in public_functions(LightningDataModule):
            setattr(self, hook, trace.wrap(f"DM.{hook}", hook, getattr(self, hook)))

    # Implemented so that Lightning calls it, as in test_hooks.py.
    def prepare_data(self) -> None:
        pass


def trainer(root: str, trace: Trace | None, **flags: Any) -> Trainer:
    return Trainer(
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[HookedCallback(trace)] if trace is not None else [],
        **flags,
    )


FIT = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2}


def fit(model_class: Callable[[Trace], HookedModel] = HookedModel, **flags: Any) -> Callable[[str, Trace], None]:
    def run(root: str, trace: Trace) -> None:
        trainer(root, trace, **{**FIT, **flags}).fit(model_class(trace))

    return run


def fit_without_validation(root: str, trace: Trace) -> None:
    # As test_hooks.py's `test_transfer_batch_hook_ddp` removes the hook: no validation_step
    # (and no val_dataloader either), so Lightning has nothing to validate.
    model = HookedModel(trace)
    model.validation_step = None
    model.val_dataloader = None
    trainer(root, trace, **FIT).fit(model)


def evaluate(verb: str, model_class: Callable[[Trace], HookedModel] = HookedModel) -> Callable[[str, Trace], None]:
    def run(root: str, trace: Trace) -> None:
        run_trainer = trainer(root, trace, max_epochs=1, limit_val_batches=2, limit_test_batches=2)
        getattr(run_trainer, verb)(model_class(trace), verbose=False)

    return run


def predict(root: str, trace: Trace, model_class: Callable[[Trace], HookedModel] = HookedModel) -> None:
    trainer(root, trace, limit_predict_batches=2).predict(model_class(trace))


def predict_two_dataloaders(root: str, trace: Trace) -> None:
    predict(root, trace, TwoDataloadersModel)


def datamodule(verb: str) -> Callable[[str, Trace], None]:
    """test_trainer_datamodule_hook_system: a plain BoringModel, only the datamodule traced."""

    def run(root: str, trace: Trace) -> None:
        run_trainer = trainer(
            root,
            None,
            max_epochs=1,
            limit_train_batches=2,
            limit_val_batches=2,
            limit_test_batches=2,
            limit_predict_batches=2,
            reload_dataloaders_every_n_epochs=1,
        )
        kwargs = {"verbose": False} if verb in ("validate", "test") else {}
        getattr(run_trainer, verb)(BoringModel(), datamodule=HookedDataModule(trace), **kwargs)

    return run


# (section title, run, show arguments). The first five are the sections the file always had.
SECTIONS: list[tuple[str, Callable[[str, Trace], None], bool]] = [
    ("fit automatic (2 train, 2 val, 1 epoch)", fit(), False),
    ("fit manual (2 train, 2 val, 1 epoch)", fit(ManualModel), False),
    ("validate (2 batches)", evaluate("validate"), False),
    ("test (2 batches)", evaluate("test"), False),
    ("predict (2 batches)", predict, False),
    ("fit on_validation_model_train (2 train, 2 val, 1 epoch)", fit(model_train_model), False),
    ("test on_test_model_train (2 batches)", evaluate("test", model_train_model), False),
    ("fit num_sanity_val_steps=0 (2 train, 2 val, 1 epoch)", fit(num_sanity_val_steps=0), False),
    ("fit val_check_interval=0.5 (2 train, 2 val twice, 1 epoch)", fit(val_check_interval=0.5), False),
    ("fit limit_train_batches=0 (0 train, 2 val, 1 epoch)", fit(limit_train_batches=0), False),
    ("fit without validation_step (2 train, 1 epoch)", fit_without_validation, False),
    ("fit automatic arguments (2 train, 2 val, 1 epoch)", fit(), True),
    ("validate arguments (2 batches)", evaluate("validate"), True),
    ("test arguments (2 batches)", evaluate("test"), True),
    ("predict arguments (2 batches)", predict, True),
    ("datamodule fit (2 train, 2 val, 1 epoch)", datamodule("fit"), False),
    ("datamodule validate (2 batches)", datamodule("validate"), False),
    ("datamodule test (2 batches)", datamodule("test"), False),
    ("datamodule predict (2 batches)", datamodule("predict"), False),
    ("fit two val dataloaders arguments (2 train, 2 val of each, 1 epoch)", fit(TwoDataloadersModel), True),
    ("validate two dataloaders arguments (2 batches of each)", evaluate("validate", TwoDataloadersModel), True),
    ("test two dataloaders arguments (2 batches of each)", evaluate("test", TwoDataloadersModel), True),
    ("predict two dataloaders arguments (2 batches of each)", predict_two_dataloaders, True),
]


def header(command: str) -> list[str]:
    return [
        f"# PyTorch Lightning {pl.__version__} hook ENTRY order (torch {torch.__version__}, "
        f"Python {platform.python_version()}, CPU).",
        f"# Made by `{command}` (scripts/lightning_hook_trace.py); do not edit by hand.",
        "# Configurations of Lightning's tests/tests_pytorch/models/test_hooks.py and a few more: one",
        "# section per run. `hook` is a LightningModule hook, `Callback.hook` the traced callback's, `DM.hook`",
        "# the traced datamodule's; two spaces of indent per level of nesting inside another traced hook.",
        "# The `arguments` sections also show the arguments test_hooks.py checks.",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", "-o", help="file to write (default: standard output)")
    parser.add_argument("--command", default="bash scripts/lightning_hook_trace.sh", help="command named in the header")
    parser.add_argument("--section", action="append", help="only the sections whose title starts with this")
    options = parser.parse_args()

    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.manual_seed(0)

    out = header(options.command)
    for title, run, with_arguments in SECTIONS:
        if options.section and not any(title.startswith(s) for s in options.section):
            continue
        trace = Trace(with_arguments)
        with tempfile.TemporaryDirectory() as root:
            run(root, trace)
        assert trace.depth == 0, title
        out += [f"#### {title}", *trace.lines, ""]
    text = "\n".join(out)
    if options.output:
        with open(options.output, "w", encoding="utf-8") as file:
            file.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
