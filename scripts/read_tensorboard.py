"""Reads TensorBoard event files with TensorBoard's own reader (EventAccumulator) and prints, as
JSON, every scalar of every run folder under LOGDIR: {"<run folder>": {"<tag>": [[step, value], ...]}}.

Usage: read_tensorboard.py LOGDIR
"""
import json
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(logdir):
    runs = {}
    for folder, _, files in sorted(os.walk(logdir)):
        if not any("tfevents" in f for f in files):
            continue
        acc = EventAccumulator(folder)
        acc.Reload()
        name = os.path.relpath(folder, logdir)
        runs[name] = {
            tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
        }
    print(json.dumps(runs))


if __name__ == "__main__":
    main(sys.argv[1])
