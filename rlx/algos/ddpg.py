"""Deep Deterministic Policy Gradient (notes: "Deep Deterministic Policy Gradients (DDPG)", Algorithm 1).

Four networks: actor μ(s), critic Q(s, a) and their target copies, updated by Polyak averaging with τ.
Exploration: a = μ(s) + N with Ornstein-Uhlenbeck (the paper's) or Gaussian noise, in the unit box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from rlx.algos.common import ActionBounds, ExplorationNoise, OffPolicyCommon, Persistent, frozen_copy, member_encoders
from rlx.algos.compiled import UpdateStep
from rlx.algos.sac import member_batch, polyak_members_
from rlx.buffers.replay import Transitions
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.members import Members
from rlx.networks.off_policy import DeterministicActor, MemberDeterministicActor, MemberQEnsemble, QEnsemble
from rlx.objectives.targets import bellman_target, critic_regression_loss, ddpg_policy_loss
from rlx.optim.stacked import MemberAdam


@dataclass
class DDPGConfig(OffPolicyCommon):
    lr: float = param(1e-3, gt=0, help="Adam learning rate (actor and critic)")
    noise: Literal["ou", "gaussian"] = param("ou", help="exploration noise process")
    noise_std: float = param(0.1, ge=0, help="exploration noise σ, in unit-box action units")


class MemberExplorationNoise:
    """A population's exploration noise (issue 12): member k's :class:`ExplorationNoise` (its own σ, its
    own seed, one process per env) drives member k's envs ``k*N .. (k+1)*N - 1`` of the loop's member-major
    env batch; an episode end resets only that env's process. K=1: exactly a plain run's noise.

    ``state_dict`` keeps a plain run's layout (``{"processes": [...]}``, all K*N processes, member-major),
    so a member's checkpoint loads into a plain run (``rlx eval``); a population restores every member's."""

    def __init__(self, noises: Sequence[ExplorationNoise]):
        self.noises = list(noises)

    @property
    def processes(self) -> list[Any]:
        return [p for n in self.noises for p in n.processes]

    def sample(self, n: int) -> np.ndarray:
        """``[n, dim]`` noise for ``n`` = K*N envs, member k's N rows from member k's processes."""
        per = n // len(self.noises)
        return np.concatenate([noise.sample(per) for noise in self.noises])

    def reset(self, done: np.ndarray) -> None:
        per = len(done) // len(self.noises)
        for k, noise in enumerate(self.noises):
            noise.reset(done[k * per:(k + 1) * per])

    def state_dict(self) -> dict:
        return {"processes": [p.state_dict() for p in self.processes]}

    def load_state_dict(self, state: dict) -> None:
        per = len(state["processes"]) // len(self.noises)
        for k, noise in enumerate(self.noises):
            noise.load_state_dict({"processes": state["processes"][k * per:(k + 1) * per]})


class DDPG(Persistent):
    """Critic toward y = r + γ(1−d)Q'(s', μ'(s')); actor along ∇_a Q(s, a)|_{a=μ(s)} ∇_θ μ(s).

    A population of K members (issue 12; a plain run is K=1, the same code), as :class:`rlx.algos.sac.SAC`:
    member k has its own actor, critics and their targets (``[K, ...]`` stacked), its own lr, γ, τ,
    exploration σ (its own noise processes, one per env) and, for TD3, target-policy noise σ and clip;
    its own Adam moments and steps and its own minibatch. The noise process and TD3's policy delay are
    shared (they split populations)."""

    loop = "off_policy"
    # config keys that may differ between the members of one population (hydra/launcher=population)
    member_keys: tuple[str, ...] = ("algo.lr", "algo.gamma", "algo.tau", "algo.noise_std")
    Config = DDPGConfig
    action_spaces = ("continuous",)
    observation_spaces = ("box", "dict")  # Dict: packed vectors, rlx.buffers.replay.DictReplayBuffer for image keys
    persist = ("actor", "actor_target", "critic", "critic_target", "actor_opt", "critic_opt", "noise", "updates", "random")
    n_critics = 1

    def __init__(self, spec: EnvSpec, hp: DDPGConfig | Sequence[DDPGConfig], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        """``hp``: one config (a plain run) or one per member; ``seeds``: member k's networks and noise seed
        are drawn after ``torch.manual_seed(seeds[k])``, exactly as its plain run's; None: from the current
        RNG state."""
        hps: list[Any] = [hp] if isinstance(hp, DDPGConfig) else list(hp)
        self.hp, self.hps, self.device = hps[0], hps, device
        k = len(hps)
        self.members = Members(k, device, spec.obs_shape, seeds)
        self.random = self.members.random  # replay minibatches, warm-up actions, TD3's smoothing: member k's own
        self.bounds = ActionBounds(spec.action_space, device)
        enc = member_encoders(spec, net, k)
        actors, critics, noises = [], [], []
        for i, h in enumerate(hps):  # each member built as its plain run builds it (same RNG draws, same order)
            if seeds is not None:
                torch.manual_seed(seeds[i])
            actors.append(DeterministicActor(enc.features, self.bounds.dim, net.hidden_sizes, net.activation, encoder=enc()))
            critics.append(QEnsemble(enc.features, self.bounds.dim, net.hidden_sizes, net.activation, self.n_critics,
                                     encoder=enc()))
            noises.append(ExplorationNoise(h.noise, h.noise_std, self.bounds.dim))
        self.actor = MemberDeterministicActor(actors).to(device)
        self.critic = MemberQEnsemble(critics).to(device)
        self.actor_target, self.critic_target = frozen_copy(self.actor), frozen_copy(self.critic)
        lrs = [h.lr for h in hps]
        self.actor_opt, self.critic_opt = MemberAdam(self.actor.parameters(), lrs), MemberAdam(self.critic.parameters(), lrs)
        self.noise = MemberExplorationNoise(noises)
        self.gamma = self.members.hyper(hps, "gamma")  # [K, 1]
        self.members.hyper(hps, "lr"), self.members.hyper(hps, "tau")  # PBT's to change: hyperparameters_changed
        self.tau = [h.tau for h in hps]
        self.updates = 0
        self.step = UpdateStep(self._step)  # compiled by rlx.algos.compiled.set_compile (compile=true)

    def hyperparameters_changed(self) -> None:
        m = self.members
        self.actor_opt.lr = m.hyper_list("lr", self.actor_opt.lr)
        self.critic_opt.lr = m.hyper_list("lr", self.critic_opt.lr)
        self.tau = m.hyper_list("tau", self.tau)

    # -- acting (the loop's env batch [K*N, *obs] <-> the members' [K, N, *obs]) ---------------------
    @torch.inference_mode()
    def explore(self, obs: Tensor) -> Tensor:
        """a = clip(μ(s) + N, −1, 1), rescaled to the env's Box."""
        noise = torch.from_numpy(self.noise.sample(obs.shape[0])).to(obs.device)
        mu = self.members.join(self.actor(self.members.split(obs)), obs)
        return self.bounds.to_env((mu + noise).clamp(-1.0, 1.0))

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.bounds.to_env(self.members.join(self.actor(self.members.split(obs)), obs))

    @torch.inference_mode()
    def act_member(self, k: int, obs: Tensor, deterministic: bool = True) -> Tensor:
        """Member k's action for ``obs`` ``[B, *obs]`` (its evaluation): every member acts on it, row k is kept."""
        return self.bounds.to_env(self.actor(obs.expand(self.members.k, *obs.shape))[k])

    def episodes_ended(self, done: np.ndarray) -> None:
        self.noise.reset(done)  # the notes' "initialize a random process N" at each episode start

    # -- learning -------------------------------------------------------------------------------
    def _mask(self) -> Tensor | None:
        active = self.members.active
        return None if bool(active.all()) else active

    def update(self, batch: Transitions, progress: float) -> list[dict[str, float]]:
        """One update of every active member on its own minibatch (``[K, B, ...]``; a plain buffer's
        ``[B, ...]`` for K=1). Returns each member's metrics."""
        mask, batch = self._mask(), member_batch(batch)
        critic_loss, q_mean, actor_loss = self.step(batch.obs, batch.actions, batch.rewards, batch.next_obs,
                                                    batch.terminated, None, True, mask=mask)
        self.updates += 1
        return self._metrics(critic_loss, q_mean, actor_loss)

    def target(self, rewards: Tensor, next_obs: Tensor, terminated: Tensor, eps: Tensor | None) -> Tensor:
        """The critics' regression target y ``[K, B]``: r + γ(1−d)Q'(s', μ'(s')) (TD3: smoothed, clipped double Q)."""
        next_q = self.critic_target(next_obs, self.actor_target(next_obs))[:, 0]  # [K, B]
        return bellman_target(rewards, next_q, terminated, self.gamma)

    def _step(self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor, terminated: Tensor,
              eps: Tensor | None, actor: bool, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """The update's tensor part (``self.step``: eager, or compiled with ``compile``): the critic step, and
        with ``actor`` the actor step and the target update; ``eps``: TD3's smoothing ε. Returns each
        member's critic loss, mean Q(s, a) and actor loss (None without an actor step), detached."""
        with torch.no_grad():
            y = self.target(rewards, next_obs, terminated, eps)
        critic_loss, q = self.critic_step(obs, actions, y, mask)
        return critic_loss, q.mean(dim=(1, 2)), self.actor_step(obs, mask) if actor else None

    def critic_step(self, obs: Tensor, actions: Tensor, y: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """Regress every critic on y (``[K, B]``); returns (each member's loss ``[K]``, Q(s, a) ``[K, E, B]``) detached."""
        q = self.critic(obs, self.bounds.to_unit(actions))
        loss = critic_regression_loss(q, y)
        self.critic_opt.minimize(loss, mask)
        return loss.detach(), q.detach()

    def actor_step(self, obs: Tensor, mask: Tensor | None) -> Tensor:
        """Deterministic policy gradient through the first critic (its weights held fixed), then move
        both target networks toward the online ones. Returns each member's loss ``[K]``."""
        loss = ddpg_policy_loss(self.critic(obs, self.actor(obs), detach_params=True, first=1)[:, 0], dim=1)
        self.actor_opt.minimize(loss, mask)
        with torch.no_grad():
            k = self.members.k
            polyak_members_(list(self.critic_target.parameters()), list(self.critic.parameters()), self.tau, k, mask)
            polyak_members_(list(self.actor_target.parameters()), list(self.actor.parameters()), self.tau, k, mask)
        return loss.detach()

    @staticmethod
    def _metrics(critic_loss: Tensor, q_mean: Tensor, actor_loss: Tensor) -> list[dict[str, float]]:
        """Each member's metrics with ONE device sync."""
        stats = torch.stack([critic_loss, q_mean, actor_loss], dim=1).float()
        return [dict(zip(("critic_loss", "q_mean", "actor_loss"), row, strict=True)) for row in stats.tolist()]
