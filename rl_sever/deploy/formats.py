"""The formats an exported policy is written in, and the runtime that runs each.

- savedmodel: TensorFlow's SavedModel (`saved_model.pb` and `variables/`), run by TensorFlow.
- onnx: `policy.onnx`, converted by tf2onnx from the policy's tf.function (the route Keras 3's
  own ONNX export takes; `from_keras` is broken on TF >= 2.16), run by ONNX Runtime.
- litert: `policy.tflite` (`policy_float16.tflite`, `policy_int8.tflite` when quantised),
  written by TensorFlow's converter, run by ai-edge-litert's interpreter.
Every runtime takes and returns the same named arrays (the signature's inputs and outputs).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from rl_sever.core.export import SIGNATURE
from rl_sever.errors import ExportError

FORMATS = ("savedmodel", "onnx", "litert")
QUANTIZE = ("float16", "int8")
ONNX_OPSET = 17
_MODULES = {"onnx": ("tf2onnx", "onnxruntime"), "litert": ("ai_edge_litert",)}

Runtime = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@contextlib.contextmanager
def _native_stderr(into: list[str] | None = None):
    """LiteRT's converter and interpreter print from C++ straight to file descriptor 2 (INFO
    lines, and the converter's op errors, some of which it does not raise): kept out of the
    user's terminal, and with `into` given, collected there."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile("w+") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                if into is not None:
                    sink.seek(0)
                    into.append(sink.read())
    finally:
        os.close(saved)


def file_name(fmt: str, quantize: str | None = None) -> str:
    if fmt == "savedmodel":
        return "saved_model.pb"
    if fmt == "onnx":
        return "policy.onnx"
    return "policy.tflite" if quantize is None else f"policy_{quantize}.tflite"


def size_bytes(out: Path, fmt: str, quantize: str | None = None) -> int:
    """The bytes a format takes (the SavedModel with its variables)."""
    if fmt == "savedmodel":
        return sum(p.stat().st_size for p in [out / "saved_model.pb",
                                               *(out / "variables").glob("*")])
    return (out / file_name(fmt, quantize)).stat().st_size


def require(fmt: str) -> None:
    """One line naming the extra when a format's converter or runtime is not installed."""
    for module in _MODULES.get(fmt, ()):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ExportError(f"format {fmt} needs {module}: pip install 'rl_sever[export]'") from e


def write(fmt: str, policy: Any, out: Path, *, quantize: str | None = None,
          calibration: Iterable[dict[str, np.ndarray]] | None = None) -> Path:
    """Write `policy` (an ExportedPolicy) as `fmt` into `out`; returns the file written."""
    path = out / file_name(fmt, quantize)
    if fmt == "savedmodel":
        tf.saved_model.save(policy, str(out),
                            signatures={SIGNATURE: policy.serve.get_concrete_function()})
    elif fmt == "onnx":
        import tf2onnx

        try:
            tf2onnx.convert.from_function(policy.serve, input_signature=policy.serve.input_signature,
                                          opset=ONNX_OPSET, output_path=str(path))
            load(fmt, out)  # tf2onnx passes ops it cannot map through; ONNX Runtime refuses them
        except OSError:
            raise  # a full disk, not the policy
        except Exception as e:
            op = re.search(r"No Op registered for (\w+)", str(e))
            reason = f"no ONNX Runtime kernel for TensorFlow op {op.group(1)}" if op else _first_line(e)
            raise ExportError(f"onnx cannot convert this policy: {reason}") from e
    else:
        path.write_bytes(_litert_bytes(policy, quantize, calibration))
    return path


def _litert_bytes(policy: Any, quantize: str | None, calibration) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [policy.serve.get_concrete_function()], policy)
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":  # int8 weights and activations, calibrated; float inputs/outputs
        # Named batches: the calibrator feeds a signature by name (a list would go to the
        # converted model's input tensors, whose order is not the function's).
        batches = list(calibration or [])
        converter.representative_dataset = lambda: iter(batches)
    printed: list[str] = []
    try:
        with _native_stderr(printed), warnings.catch_warnings():
            # int8 calibration runs TensorFlow's own (deprecated) interpreter: its warning is
            # about TensorFlow's code, not the user's.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            data = converter.convert()
    except Exception as e:  # ConverterError: its message lists the ops LiteRT lacks
        raise ExportError(f"litert cannot convert this policy: {_unsupported(str(e))}") from e
    failed = _failed_ops("".join(printed))
    if failed:  # errors the converter printed but did not raise: its file would not run
        raise ExportError(f"litert cannot convert this policy: TensorFlow op {failed}")
    return data


def _failed_ops(printed: str) -> str:
    """'Lgamma (failed to convert ...)' from the converter's printed op errors, if any."""
    for line in printed.splitlines():
        op = re.match(r'loc\(.*?fused\["(\w+):', line)
        if op and " error: " in line:
            return f"{op.group(1)} ({line.rsplit(' error: ', 1)[1].strip()[:120]})"
    return ""


def _unsupported(message: str) -> str:
    """'op X (its operand types) has no LiteRT kernel' from the converter's long message."""
    ops = re.search(r"TF Select ops: ([^\n]+)", message)
    detail = re.search(r"Details:\s*\n\s*(tf\.[^\n]+)", message)
    if ops:
        where = f" ({detail.group(1).strip()[:160]})" if detail else ""
        return f"no LiteRT kernel for TensorFlow op {ops.group(1).strip()}{where}"
    return _first_line(message)


def _first_line(error: Any) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]


def load(fmt: str, out: Path, quantize: str | None = None) -> Runtime:
    """A callable running the written policy with the format's runtime: named inputs -> named
    outputs, NumPy arrays both."""
    if fmt == "savedmodel":
        serve = tf.saved_model.load(str(out)).signatures[SIGNATURE]
        return lambda feeds: {k: v.numpy() for k, v in serve(**{
            k: tf.constant(v) for k, v in feeds.items()}).items()}
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out / file_name(fmt)),
                                               providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return lambda feeds: dict(zip(names, session.run(names, feeds)))
    from ai_edge_litert.interpreter import Interpreter

    with _native_stderr():
        interpreter = Interpreter(model_path=str(out / file_name(fmt, quantize)),
                                  num_threads=os.cpu_count())  # as ONNX Runtime's default
        runner = interpreter.get_signature_runner(SIGNATURE)
        runner(**_zeros(runner))  # the XNNPACK delegate is made (and announced) at the first call
    return lambda feeds: {k: np.asarray(v) for k, v in runner(**feeds).items()}



def _zeros(runner) -> dict[str, np.ndarray]:
    """One all-zero observation for every input of a LiteRT signature."""
    return {name: np.zeros([1, *detail["shape"][1:]], detail["dtype"])
            for name, detail in runner.get_input_details().items()}
