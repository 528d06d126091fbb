"""TensorBoard event-file maintenance for resumed runs."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tensorboard.compat.proto import event_pb2

from rl_sever.errors import WriteError


def truncate_events_after(run_dir: str | Path, step: int) -> int:
    """Drop summaries logged after `step` (the checkpoint a resumed run restarts from), so the
    step axis continues without duplicate points, and a record a full disk cut short. Returns
    how many events were dropped."""
    dropped = 0
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        kept, removed = [], 0
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                raw = record.numpy()
                event = event_pb2.Event.FromString(raw)
                if event.HasField("summary") and event.step > step:
                    removed += 1
                else:
                    kept.append(raw)
        except tf.errors.DataLossError:  # a record torn by a full disk: the file ends before it
            removed += 1
        if removed:
            tmp = path.with_name(".rewrite-" + path.name)  # not an event file while written
            try:
                with tf.io.TFRecordWriter(str(tmp)) as writer:
                    for raw in kept:
                        writer.write(raw)
                tmp.replace(path)
            except (OSError, tf.errors.OpError) as e:
                tmp.unlink(missing_ok=True)
                raise WriteError(f"cannot rewrite {path} for the resume (the disk is still "
                                 f"full?): {str(e).strip().splitlines()[0][:200]}") from None
            dropped += removed
    return dropped
