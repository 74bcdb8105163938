"""Checks a run's TensorBoard event files with TensorBoard's own readers.

    python scripts/check_tensorboard.py LOGDIR EXPECTED.json

LOGDIR is the directory of one run (where `events.out.tfevents.*` lie). EXPECTED.json, written by
tests/tensorboard.rs, holds

    {"scalars": {TAG: [[STEP, VALUE], ...], ...}, "hparams": {NAME: VALUE, ...}, "metrics": [TAG, ...]}

where a VALUE is a number (a float32's exact value) or "nan", "inf" or "-inf"; "hparams" are the
values TensorBoard should show (nested ones as their JSON text) and "metrics" the experiment's
metric tags. It checks, and prints each difference:

- each event file's TFRecord framing: lengths and masked CRC32Cs (tensorboard's reference
  implementation), and that its first event says `file_version = "brain.Event:2"`;
- with `event_accumulator.EventAccumulator` (all scalars kept): the scalar tags, and each tag's
  (step, value) list, exactly, in order;
- the `hparams` plugin's three summaries (experiment, session start, session end), parsed with
  `tensorboard.plugins.hparams.metadata`: the hparam names, types and values, the metric tags and
  the success status; and that `plugin_event_accumulator` (what `tensorboard --logdir` serves the
  HParams tab from) holds them as tensors.

Exits 0 when nothing differs, 1 otherwise.
"""

import json
import math
import os
import struct
import sys

from tensorboard import context
from tensorboard.backend.event_processing import (
    data_provider,
    event_accumulator,
    plugin_event_accumulator,
    plugin_event_multiplexer,
)
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups
from tensorboard.plugins.hparams import metadata as hparams_metadata

problems = []


def problem(message):
    problems.append(message)
    print("DIFFERS:", message)


def same_float(got, want):
    if math.isnan(want):
        return math.isnan(got)
    return got == want


def check_framing(path):
    """Reads every record of `path` and returns its events."""
    events = []
    with open(path, "rb") as f:
        data = f.read()
    offset = 0
    while offset < len(data):
        header = data[offset : offset + 8]
        if len(header) < 8 or len(data) < offset + 12:
            problem(f"{path}: truncated record header at byte {offset}")
            return events
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[offset + 8 : offset + 12])
        if header_crc != masked_crc32c(header):
            problem(f"{path}: bad length CRC at byte {offset}")
            return events
        body = data[offset + 12 : offset + 12 + length]
        footer = data[offset + 12 + length : offset + 16 + length]
        if len(body) < length or len(footer) < 4:
            problem(f"{path}: truncated record at byte {offset}")
            return events
        if struct.unpack("<I", footer)[0] != masked_crc32c(body):
            problem(f"{path}: bad data CRC in the record at byte {offset}")
            return events
        events.append(event_pb2.Event.FromString(body))
        offset += 16 + length
    if not events:
        problem(f"{path}: no records")
    elif events[0].file_version != "brain.Event:2":
        problem(f"{path}: the first event's file_version is {events[0].file_version!r}, not 'brain.Event:2'")
    return events


def check_scalars(logdir, expected):
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    if acc.file_version != 2.0:
        problem(f"EventAccumulator read file_version {acc.file_version}, not 2")
    tags = set(acc.Tags()["scalars"])
    want_tags = set(expected)
    for tag in sorted(want_tags - tags):
        problem(f"scalar tag {tag!r} is missing")
    for tag in sorted(tags - want_tags):
        problem(f"scalar tag {tag!r} is not expected")
    checked = 0
    for tag in sorted(tags & want_tags):
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        want = [(step, float(value)) for step, value in expected[tag]]
        if len(got) != len(want) or not all(
            gs == ws and same_float(gv, wv) for (gs, gv), (ws, wv) in zip(got, want)
        ):
            problem(f"scalar {tag!r}: got {got}, expected {want}")
        checked += len(got)
    print(f"scalars: {len(tags)} tags, {checked} (step, value) pairs read by EventAccumulator")
    return acc


def check_hparams(logdir, acc, want_hparams, want_metrics):
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    tags = {
        hparams_metadata.EXPERIMENT_TAG,
        hparams_metadata.SESSION_START_INFO_TAG,
        hparams_metadata.SESSION_END_INFO_TAG,
    }
    if set(content) != tags:
        problem(f"hparams plugin tags are {sorted(content)}, expected {sorted(tags)}")
        return
    experiment = hparams_metadata.parse_experiment_plugin_data(content[hparams_metadata.EXPERIMENT_TAG])
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    end = hparams_metadata.parse_session_end_info_plugin_data(content[hparams_metadata.SESSION_END_INFO_TAG])

    types = {info.name: api_pb2.DataType.Name(info.type) for info in experiment.hparam_infos}
    if set(types) != set(want_hparams):
        problem(f"the experiment's hparams are {sorted(types)}, expected {sorted(want_hparams)}")
    metrics = [info.name.tag for info in experiment.metric_infos]
    if metrics != want_metrics:
        problem(f"the experiment's metrics are {metrics}, expected {want_metrics}")
    if set(start.hparams) != set(want_hparams):
        problem(f"the session's hparams are {sorted(start.hparams)}, expected {sorted(want_hparams)}")
    for name, want in want_hparams.items():
        if name not in start.hparams:
            continue
        value = start.hparams[name]
        kind = value.WhichOneof("kind")
        if isinstance(want, bool):
            ok, want_type = kind == "bool_value" and value.bool_value == want, "DATA_TYPE_BOOL"
        elif isinstance(want, (int, float)):
            ok, want_type = kind == "number_value" and value.number_value == float(want), "DATA_TYPE_FLOAT64"
        else:
            ok, want_type = kind == "string_value" and value.string_value == want, "DATA_TYPE_STRING"
        if not ok:
            problem(f"hparam {name!r}: got {kind} {getattr(value, kind) if kind else None!r}, expected {want!r}")
        if types.get(name, want_type) != want_type:
            problem(f"hparam {name!r} has type {types[name]}, expected {want_type}")
    if end.status != api_pb2.STATUS_SUCCESS:
        problem(f"session end status is {api_pb2.Status.Name(end.status)}, not STATUS_SUCCESS")
    print(f"hparams: {len(start.hparams)} values, metrics {metrics}, status {api_pb2.Status.Name(end.status)}")

    # What the TensorBoard server reads (it migrates the summaries to tensors on the way).
    served = plugin_event_accumulator.EventAccumulator(logdir)
    served.Reload()
    served_content = served.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    if served_content != content:
        problem("plugin_event_accumulator's hparams content differs from event_accumulator's")
    for tag in sorted(tags):
        try:
            if not served.Tensors(tag):
                problem(f"plugin_event_accumulator has no tensor for {tag!r}")
        except KeyError:
            problem(f"plugin_event_accumulator has no tensor for {tag!r}")


def check_hparams_tab(logdir, want_hparams, want_metrics):
    """What the HParams tab asks the server for: the experiment and its session groups."""
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, logdir)
    hparams = backend_context.Context(base_plugin.TBContext(data_provider=provider, multiplexer=mux, logdir=logdir))
    ctx = context.RequestContext()
    experiment = get_experiment.Handler(ctx, hparams, "", api_pb2.GetExperimentRequest(include_metrics=True)).run()
    names = sorted(info.name for info in experiment.hparam_infos)
    if names != sorted(want_hparams):
        problem(f"the HParams tab's experiment has hparams {names}, expected {sorted(want_hparams)}")
    metrics = [info.name.tag for info in experiment.metric_infos]
    if metrics != want_metrics:
        problem(f"the HParams tab's experiment has metrics {metrics}, expected {want_metrics}")
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0,
        slice_size=100,
        allowed_statuses=[api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING],
        include_metrics=True,
    )
    groups = list_session_groups.Handler(ctx, hparams, "", request).run().session_groups
    if len(groups) != 1:
        problem(f"the HParams tab lists {len(groups)} session groups, expected 1")
        return
    shown = {}
    for name, value in groups[0].hparams.items():
        shown[name] = getattr(value, value.WhichOneof("kind"))
    for name, want in want_hparams.items():
        if name not in shown or shown[name] != want:
            problem(f"the HParams tab shows {name!r} = {shown.get(name)!r}, expected {want!r}")
    print(f"HParams tab: 1 session group, {len(shown)} hparams, metrics {metrics}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    logdir, expected_path = sys.argv[1:]
    with open(expected_path) as f:
        expected = json.load(f)
    files = sorted(name for name in os.listdir(logdir) if name.startswith("events.out.tfevents."))
    if not files:
        problem(f"no event file in {logdir}")
    records = sum(len(check_framing(os.path.join(logdir, name))) for name in files)
    print(f"framing: {len(files)} event file(s), {records} records read")
    acc = check_scalars(logdir, expected["scalars"])
    check_hparams(logdir, acc, expected["hparams"], expected["metrics"])
    check_hparams_tab(logdir, expected["hparams"], expected["metrics"])
    if problems:
        print(f"{len(problems)} difference(s)")
        sys.exit(1)
    print("TensorBoard reads the run as expected")


if __name__ == "__main__":
    main()
