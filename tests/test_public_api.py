"""The public API holds still: what rl_sever and agents declare imports, every import shown in
the README, the docs and the examples works, and moved paths warn but still work."""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from pathlib import Path

import pytest

import agents
import rl_sever
from rl_sever.core.registry import registered

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "examples").glob("*.py"))]
FROM_IMPORT = re.compile(r"^\s*from\s+((?:rl_sever|agents|envs|examples)[\w.]*)\s+import\s+"
                         r"(\([^)]*\)|[^#\n]+)", re.M)


def documented_imports() -> list[tuple[str, str, str]]:
    """(document, module, name) of every `from rl_sever|agents|envs... import ...` shown."""
    out = []
    for doc in DOCUMENTS:
        for module, names in FROM_IMPORT.findall(doc.read_text()):
            for name in re.split(r"[,\s()]+", names.replace("\\", " ")):
                if name and name != "as" and name.isidentifier():
                    out.append((doc.name, module, name))
    return out


def test_the_documents_show_imports():
    found = documented_imports()
    assert len(found) > 40
    assert ("README.md", "agents", "PPO") in found


@pytest.mark.parametrize("doc,module,name", documented_imports(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_documented_import_works(doc, module, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # documents show current paths only
        imported = importlib.import_module(module)
    if not hasattr(imported, name):  # `from pkg import submodule`
        importlib.import_module(f"{module}.{name}")


@pytest.mark.parametrize("name", rl_sever.__all__)
def test_every_public_name_of_rl_sever_imports(name):
    value = getattr(rl_sever, name)
    assert value is getattr(importlib.import_module(rl_sever._WHERE[name]), name)


def test_agents_exports_every_registered_page():
    for algo, klass in registered().items():
        if klass.__module__.startswith("agents."):
            assert getattr(agents, klass.__name__) is klass, algo
            assert getattr(agents, klass.config_cls.__name__) is klass.config_cls, algo
    assert {"ppo", "a2c", "sac", "td3", "ddpg"} <= set(registered())
    assert agents.DDPG.__module__ == "agents.ddpg"


def test_the_readme_lists_every_shipped_page_the_registry_holds():
    """The README's algorithm list and its layout line follow the registry: a page added
    without them fails here."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = " ".join(text.split("\n\n- ", 1)[1].split("`agents/`", 1)[0].split())
    layout = next(line for line in text.splitlines() if line.startswith("agents/"))
    shipped = {a: k for a, k in registered().items() if k.__module__.startswith("agents.")}
    assert len(shipped) >= 7
    for algo, klass in shipped.items():
        assert klass.__name__ in listed.replace(",", " ").split(), algo
        assert algo in layout.replace(",", " ").replace(";", " ").split(), algo


@pytest.mark.parametrize("old,new,name", [
    ("rl_sever.loss_terms", "rl_sever.objective", "loss_term"),
    ("rl_sever.core.spaces", "rl_sever.config.spaces", "ActionSpec"),
    ("rl_sever.core.schedules", "rl_sever.config.schedules", "Scheduled"),
    ("rl_sever.objective.spec", "rl_sever.config.loss_spec", "parse_spec"),
])
def test_a_moved_path_still_imports_and_warns(old, new, name):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_users_loss_module_of_the_old_path_still_works():
    """What users' loss modules wrote before the objective package existed."""
    sys.modules.pop("rl_sever.loss_terms", None)
    with pytest.warns(DeprecationWarning):
        from rl_sever.loss_terms import LossTerm, loss_term

    @loss_term(trains={"critic"})
    def my_term(batch, out):
        return out["values"]

    assert isinstance(my_term, LossTerm) and my_term.name == "my_term"
