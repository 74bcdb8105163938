#!/usr/bin/env python3
"""Writes tests/fixtures/torchmetrics.json: inputs, and what torchmetrics computes from them.

Run it through `bash scripts/torchmetrics_fixture.sh`, which makes the virtual environment with the
pinned torch and torchmetrics. tests/metrics_torchmetrics.rs feeds the same inputs, batch by batch,
to burn-lightning's metrics and compares every value with torchmetrics' to 1e-6; when
REFERENCE_PYTHON names the environment's python, it also runs this script again and checks that
the committed file is what torchmetrics writes today.

The file holds:

    inputs     named inputs, each a list of batches (`preds` and `target`, or `value` and `weight`
               for the aggregators), drawn from a seeded generator as float32 (so both sides start
               from the same values); some scores are rounded to make ties
    cases      one per metric and configuration: the metric's name, its torchmetrics arguments,
               the input's name, the value of `forward` for each batch, and `compute` after all
               of them (a number, or a nested list for the confusion matrix)
    collection a `MetricCollection` of two metrics with a prefix: its keys and values
    versions   torch and torchmetrics
"""

from __future__ import annotations

import argparse
import json
import pathlib
import warnings

import torch
import torchmetrics
from torchmetrics import (
    AUROC,
    Accuracy,
    ConfusionMatrix,
    F1Score,
    MaxMetric,
    MeanAbsoluteError,
    MeanMetric,
    MeanSquaredError,
    MetricCollection,
    MinMetric,
    Precision,
    Recall,
    SumMetric,
)

# torchmetrics warns about what the cases do on purpose: a class without samples, NaN values.
warnings.filterwarnings("ignore", category=UserWarning, module="torchmetrics")

SEED = 2026
# Batch sizes: uneven, so that a mean of batch values would differ from the value of the epoch.
BATCHES = [37, 64, 19]


def batches(make):
    return [make(n) for n in BATCHES]


def inputs(generator: torch.Generator) -> dict:
    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float32)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float32)

    def randint(high, *shape):
        return torch.randint(0, high, shape, generator=generator)

    def binary(n):
        target = randint(2, n)
        # Scores correlated with the target, rounded to two decimals: ties.
        preds = torch.clamp(0.35 * target + 0.65 * rand(n), 0, 1)
        return {"preds": torch.round(preds * 100) / 100, "target": target}

    def binary_logits(n):
        target = randint(2, n)
        return {"preds": 2.0 * target - 1.0 + 1.5 * randn(n), "target": target}

    def multiclass(n, classes=5, used=5):
        target = randint(used, n)
        logits = randn(n, classes) + 1.5 * torch.nn.functional.one_hot(target, classes)
        if used < classes:
            logits[:, used:] = -20.0
        return {"preds": logits, "target": target}

    def multiclass_ties(n):
        target = randint(5, n)
        probs = torch.softmax(randn(n, 5) + torch.nn.functional.one_hot(target, 5), dim=1)
        return {"preds": torch.round(probs * 10) / 10, "target": target}

    def multilabel(n):
        target = randint(2, n, 4)
        return {"preds": torch.clamp(0.3 * target + 0.7 * rand(n, 4), 0, 1), "target": target}

    def regression(n):
        target = randn(n, 3)
        return {"preds": target + 0.5 * randn(n, 3), "target": target}

    def values(n):
        value = 10 * randn(n)
        value[::7] = float("nan")
        return {"value": value, "weight": rand(n) + 0.5}

    return {
        "binary": batches(binary),
        "binary_logits": batches(binary_logits),
        "multiclass": batches(multiclass),
        "multiclass_absent": batches(lambda n: multiclass(n, classes=6, used=5)),
        "multiclass_ties": batches(multiclass_ties),
        "multilabel": batches(multilabel),
        "regression": batches(regression),
        "values": batches(values),
    }


# (metric name, torchmetrics class, arguments, input name)
CASES = []
for average in ["micro", "macro", "weighted"]:
    for name, cls in [("Accuracy", Accuracy), ("Precision", Precision), ("Recall", Recall), ("F1Score", F1Score)]:
        CASES.append((name, cls, {"task": "multiclass", "num_classes": 5, "average": average}, "multiclass"))
        CASES.append((name, cls, {"task": "multilabel", "num_labels": 4, "average": average}, "multilabel"))
    for name, cls in [("Accuracy", Accuracy), ("Precision", Precision), ("Recall", Recall)]:
        CASES.append(
            (name, cls, {"task": "multiclass", "num_classes": 5, "average": average, "top_k": 2}, "multiclass")
        )
for name, cls in [("Accuracy", Accuracy), ("Precision", Precision), ("Recall", Recall), ("F1Score", F1Score)]:
    CASES.append((name, cls, {"task": "binary"}, "binary"))
    CASES.append((name, cls, {"task": "binary", "threshold": 0.3}, "binary"))
    CASES.append((name, cls, {"task": "binary"}, "binary_logits"))
    CASES.append((name, cls, {"task": "multiclass", "num_classes": 6, "average": "macro"}, "multiclass_absent"))
    CASES.append((name, cls, {"task": "multiclass", "num_classes": 5, "average": "macro"}, "multiclass_ties"))
CASES.append(("F1Score", F1Score, {"task": "multiclass", "num_classes": 5, "average": "macro", "top_k": 2}, "multiclass"))
for input_name in ["binary", "binary_logits"]:
    CASES.append(("AUROC", AUROC, {"task": "binary"}, input_name))
for average in ["macro", "weighted"]:
    for input_name in ["multiclass", "multiclass_ties"]:
        CASES.append(("AUROC", AUROC, {"task": "multiclass", "num_classes": 5, "average": average}, input_name))
    CASES.append(("AUROC", AUROC, {"task": "multiclass", "num_classes": 6, "average": average}, "multiclass_absent"))
for normalize in [None, "true", "pred", "all"]:
    CASES.append(("ConfusionMatrix", ConfusionMatrix, {"task": "binary", "normalize": normalize}, "binary"))
    CASES.append(
        ("ConfusionMatrix", ConfusionMatrix, {"task": "multiclass", "num_classes": 5, "normalize": normalize}, "multiclass")
    )
    CASES.append(
        ("ConfusionMatrix", ConfusionMatrix, {"task": "multilabel", "num_labels": 4, "normalize": normalize}, "multilabel")
    )
CASES.append(("MeanSquaredError", MeanSquaredError, {}, "regression"))
CASES.append(("MeanSquaredError", MeanSquaredError, {"squared": False}, "regression"))
CASES.append(("MeanAbsoluteError", MeanAbsoluteError, {}, "regression"))
for name, cls in [("MeanMetric", MeanMetric), ("SumMetric", SumMetric), ("MaxMetric", MaxMetric), ("MinMetric", MinMetric)]:
    CASES.append((name, cls, {}, "values"))
CASES.append(("MeanMetric", MeanMetric, {"weighted": True}, "values"))


def tolist(value: torch.Tensor):
    value = value.detach()
    return value.item() if value.numel() == 1 and value.dim() == 0 else value.tolist()


def run_case(cls, args: dict, batches: list) -> tuple[list, object]:
    args = dict(args)
    weighted = args.pop("weighted", False)
    metric = cls(**args)
    forward = []
    for batch in batches:
        if "value" in batch:
            value = metric(batch["value"], batch["weight"]) if weighted else metric(batch["value"])
        else:
            value = metric(batch["preds"], batch["target"])
        forward.append(tolist(value))
    return forward, tolist(metric.compute())


def encode(value) -> str:
    """One JSON value on one line. NaN and the infinities (an aggregator's inputs, torch's mean of
    nothing) are JSON extensions serde_json does not read: they are written as strings."""
    text = json.dumps(value, allow_nan=True)
    return text.replace("NaN", '"nan"').replace("-Infinity", '"-inf"').replace("Infinity", '"inf"')


def dump(document: dict) -> str:
    """The document with one batch, one case and one collection per line (readable diffs)."""

    def block(items: list[str], indent: str) -> list[str]:
        return [f"{indent}{item}{',' if i + 1 < len(items) else ''}" for i, item in enumerate(items)]

    inputs = []
    for name, batches in document["inputs"].items():
        inputs.append(f'"{name}": [\n' + "\n".join(block([encode(b) for b in batches], "   ")) + "\n  ]")
    lines = [
        "{",
        f' "versions": {encode(document["versions"])},',
        ' "inputs": {',
        *block(inputs, "  "),
        " },",
        ' "cases": [',
        *block([encode(case) for case in document["cases"]], "  "),
        " ],",
        f' "collection": {encode(document["collection"])}',
        "}",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("tests/fixtures/torchmetrics.json"))
    output = parser.parse_args().output

    generator = torch.Generator().manual_seed(SEED)
    named = inputs(generator)
    cases = []
    for name, cls, args, input_name in CASES:
        forward, compute = run_case(cls, args, named[input_name])
        cases.append({"metric": name, "args": args, "input": input_name, "forward": forward, "compute": compute})

    collection = MetricCollection(
        {"acc": Accuracy(task="multiclass", num_classes=5), "f1": F1Score(task="multiclass", num_classes=5, average="macro")},
        prefix="val_",
    )
    for batch in named["multiclass"]:
        collection.update(batch["preds"], batch["target"])
    collection_values = {key: tolist(value) for key, value in collection.compute().items()}

    document = {
        "versions": {"torch": torch.__version__, "torchmetrics": torchmetrics.__version__},
        "inputs": {
            name: [{key: tolist(value) for key, value in batch.items()} for batch in batches]
            for name, batches in named.items()
        },
        "cases": cases,
        "collection": {"input": "multiclass", "values": collection_values},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(dump(document))
    print(f"wrote {output}: {len(cases)} cases, torchmetrics {torchmetrics.__version__}")


if __name__ == "__main__":
    main()
