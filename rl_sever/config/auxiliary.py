"""Settings of the auxiliary modules and their names (the modules are rl_sever.auxiliary)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rl_sever.config.fields import check

AUXILIARY: dict[str, str] = {"vae": "rl_sever.auxiliary.vae:VAE",
                             "reward": "rl_sever.auxiliary.reward_prediction:RewardPrediction",
                             "inverse": "rl_sever.auxiliary.inverse_dynamics:InverseDynamics"}


@dataclass
class AuxiliaryConfig:
    hidden_sizes: list[int] = field(default_factory=lambda: [256])
    """Hidden widths of the auxiliary heads (reward, inverse) and of the VAE's MLP decoder."""
    latent_dim: int = 32
    """VAE: size of the latent code z."""
    beta: float = 1e-3
    """VAE: weight of KL(q(z|s) || N(0, I)) against the reconstruction error."""

    def validate(self) -> None:
        check(len(self.hidden_sizes) > 0 and all(h > 0 for h in self.hidden_sizes),
              f"auxiliary.hidden_sizes must be positive widths, got {self.hidden_sizes}")
        check(self.latent_dim > 0, f"auxiliary.latent_dim must be positive, got {self.latent_dim}")
        check(self.beta >= 0, f"auxiliary.beta must be >= 0, got {self.beta}")
