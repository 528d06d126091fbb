"""Imports point down the layers (bottom to top: envs; config and errors; isolation, nn,
objective, audit; auxiliary; core, with the on/off-policy families and the Ray env
runners above it; agents; cli),
and sit at the top of their files except where a start-up or an optional extra needs them
later."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [  # (layer, its path prefixes); a module may import its own layer and lower ones
    (0, ("envs",)),
    (1, ("rl_sever", "rl_sever.config", "rl_sever.errors")),
    (2, ("rl_sever.isolation", "rl_sever.nn", "rl_sever.objective", "rl_sever.audit",
         "rl_sever.loss_terms")),
    (3, ("rl_sever.auxiliary",)),
    (4, ("rl_sever.core", "rl_sever.deploy")),
    (5, ("rl_sever.onpolicy", "rl_sever.offpolicy", "rl_sever.runners", "rl_sever.experiments")),
    (6, ("agents",)),
    (7, ("rl_sever.cli",)),
]
# Function-level imports that stay: TensorFlow's quiet start-up, optional extras and heavy
# libraries only some commands use (tensorboard's readers, matplotlib, ale-py, moviepy).
LATE_OK = {"rl_sever/cli.py", "rl_sever/core/quiet.py", "rl_sever/core/compiled.py",
           "rl_sever/core/curves.py", "rl_sever/core/logger.py", "rl_sever/core/rundir.py",
           "envs/atari.py", "envs/atari_vector.py", "envs/replay.py", "envs/factory.py",
           "envs/worker_preload.py", "rl_sever/runners/cluster.py",
           "rl_sever/experiments/commands.py", "rl_sever/experiments/tune/worker.py",
           "rl_sever/runners/inference.py"}  # (imported, for its handle, by runners without TF)


def layer_of(module: str) -> int | None:
    """The layer of the longest matching prefix (`rl_sever` alone: the package's __init__,
    whose public names load lazily)."""
    found = [(len(p), layer) for layer, prefixes in LAYERS for p in prefixes
             if module == p or module.startswith(p + ".") and p != "rl_sever"]
    return max(found)[1] if found else None


def modules():
    for path in [*ROOT.glob("rl_sever/**/*.py"), *ROOT.glob("agents/*.py"), *ROOT.glob("envs/**/*.py")]:
        rel = path.relative_to(ROOT)
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        yield rel, name, ast.parse(path.read_text())


def imported(tree) -> list[tuple[str, ast.AST]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, node) for alias in node.names)
    return out


def test_every_import_points_down():
    upward = []
    for rel, name, tree in modules():
        own = layer_of(name)
        assert own is not None, rel
        for target, _ in imported(tree):
            layer = layer_of(target)
            if layer is not None and layer > own:
                upward.append(f"{rel} -> {target}")
    assert upward == []


def test_imports_sit_at_the_top_of_their_files():
    late = []
    for rel, _, tree in modules():
        top = {id(n) for n in tree.body}
        for target, node in imported(tree):
            if id(node) not in top and str(rel) not in LATE_OK and layer_of(target) is not None:
                late.append(f"{rel}:{node.lineno} {target}")
    assert late == []
