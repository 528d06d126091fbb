"""Auxiliary losses that share an agent's observation encoder.

An auxiliary module is a small class (see `base.AuxiliaryModule`): its own networks (named
modules for the optimizer and the gradient-flow audit), its loss on a batch of transitions,
and which batch fields it reads. Agents select them by name (`aux: [vae, reward, inverse]`).
Whether an auxiliary loss may train the shared encoder is the agent's
`network.encoder_grad_from` (include `aux`); otherwise it reads the features through `sever`
and trains only its own networks.
"""

from rl_sever.auxiliary.base import (
    AUXILIARY,
    AuxContext,
    AuxiliaryConfig,
    AuxiliaryModule,
    AuxiliarySet,
    make_auxiliary,
)

__all__ = ["AUXILIARY", "AuxContext", "AuxiliaryConfig", "AuxiliaryModule", "AuxiliarySet",
           "make_auxiliary"]
