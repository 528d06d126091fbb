"""rl_sever agents: one page per algorithm (its terms, its defaults, its flow contract).

Every module of this package is a page; importing the package imports them all, which
registers each algorithm (rl_sever.core.registry), and exports what each page lists in its
`__all__` (PPO, PPOConfig, ...).
"""

import importlib
import pkgutil

from rl_sever.core.agent import Agent

load = Agent.load

__all__ = ["load"]
for _page in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    _module = importlib.import_module(f"{__name__}.{_page}")
    for _name in _module.__all__:
        globals()[_name] = getattr(_module, _name)
        __all__.append(_name)
__all__.sort()
