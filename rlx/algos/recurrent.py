"""Recurrent policies for the on-policy actor-critic populations (PPO, A2C; issue 26).

:class:`RecurrentPopulationActorCritic` is :class:`rlx.algos.common.PopulationActorCritic` with the
stateful acting a ``network.recurrent`` core needs; without a core (``network.recurrent=none``) every
method is the parent's, unchanged.

- Rollouts: the state of each loop env (``env_state`` ``[K, N, S]``, K-first so
  :func:`rlx.members.member_state` slices it per member) is carried from step to step and reset where an
  episode ended (the loop's :meth:`episodes_ended`, terminated or truncated); the state at a rollout's first
  step is kept for the update (``rollout_start``). ``env_state`` is in the checkpoint: checkpoints are taken
  between rollouts (a stopped run finishes its rollout first), so a resume mid-episode is exact.
- Updates replay whole env sequences (:meth:`replay`): each env's n_steps from its stored initial state,
  reset at its episode starts, as the rollout ran them, so the replayed log-probs and values are the
  rollout's (PPO's ratio is 1 before the first gradient step).
- Evaluation: :class:`rlx.algos.protocols.RecurrentActor` (``initial_state`` / ``act_recurrent``), the
  evaluator's envs with their own state.
"""
from __future__ import annotations

from typing import Any, Sequence, cast, overload

import numpy as np
import torch
from torch import Tensor

from rlx.algos.common import PopulationActorCritic
from rlx.config.schema import NetworkConfig
from rlx.envs.make import EnvSpec
from rlx.errors import UserError
from rlx.networks.dict_obs import Obs, obs_map
from rlx.networks.recurrent import RecurrentCores, reset_where


def episode_starts(done: Tensor) -> Tensor:
    """Where an episode starts in a rollout's ``[T, ...]`` steps: after a ``done`` step. Step 0 is never
    marked: the state stored at the rollout's start had its resets applied already."""
    return torch.cat([torch.zeros_like(done[:1]), done[:-1]])


@overload
def env_major(x: Tensor) -> Tensor: ...
@overload
def env_major(x: Obs) -> Obs: ...
def env_major(x: Obs) -> Obs:
    """``[T, K, N, ...]`` -> ``[K, N, T, ...]``: member k's env sequences, each in time order (a Dict observation:
    each key's)."""
    return obs_map(lambda v: v.movedim(0, 2), x)


class RecurrentPopulationActorCritic(PopulationActorCritic):
    """PPO's and A2C's base: :class:`PopulationActorCritic` plus the state of a recurrent core (if the network
    has one; ``self.core`` is None otherwise and nothing here runs)."""

    def __init__(self, spec: EnvSpec, hps: Sequence[Any], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        super().__init__(spec, hps, net, device, seeds)
        self.core: RecurrentCores | None = self.model.core
        self.env_state: Tensor | None = None  # [K, N, S]: the loop envs' state now (None: all at an episode start)
        self.rollout_start: Tensor | None = None  # [K, N, S]: the state at this rollout's first step
        self.rollout_steps = 0  # explore calls since the last update
        if self.core is not None:
            self.persist = (*self.persist, "env_state")

    @property
    def recurrent(self) -> bool:
        return self.core is not None

    def _core(self) -> RecurrentCores:
        assert self.core is not None
        return self.core

    def _loop_state(self, x: Tensor) -> Tensor:
        """The loop envs' state for the member-split batch ``x`` ``[K, N, ...]`` (zeros before the first step)."""
        if self.env_state is None:
            self.env_state = self._core().zeros(x.shape[1], x)
        return self.env_state

    # -- acting in the loop ------------------------------------------------------------------------
    @torch.inference_mode()
    def explore(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.core is None:
            return super().explore(obs)
        x = self.members.split(obs)
        self.model.normalizer.update(x)
        feats = self.model.features(self.model.policy_input(x))
        state = self._loop_state(x)
        if self.rollout_steps == 0:
            self.rollout_start = state.clone()
        policy_feats, value_feats, self.env_state = self.core.step(feats, state)
        self.rollout_steps += 1
        action, log_prob = self.model.policy.sample(policy_feats, self.random)
        j = self.members.join
        return j(action, obs), j(log_prob, obs), j(self.model.critic(value_feats), obs)

    @torch.inference_mode()
    def value(self, obs: Tensor) -> Tensor:
        """V(s) for the loop envs' next observation ``[K*N, *obs]`` from their current state (not advanced): the
        bootstrap after a rollout, or a truncated episode's final observation at its last step."""
        if self.core is None:
            return super().value(obs)
        x = self.members.split(obs)
        state = self._loop_state(x)
        critic = self.core.critic
        value_feats, _ = critic.step(self.model.features(self.model.policy_input(x)), state[..., -critic.state_size:])
        return self.members.join(self.model.critic(value_feats), obs)

    def episodes_ended(self, done: np.ndarray) -> None:
        """Reset the state of the envs whose episode ended at the step just taken (``done`` ``[K*N]``)."""
        if self.core is None or self.env_state is None:
            return
        ended = torch.as_tensor(done, device=self.env_state.device).reshape(self.members.k, -1)
        self.env_state = reset_where(self.env_state, ended)

    # -- acting in evaluation ----------------------------------------------------------------------
    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        if self.core is not None:
            raise TypeError("a recurrent policy acts from its state: initial_state and act_recurrent "
                            "(rlx.algos.protocols.RecurrentActor), as rlx.train.evaluation.Evaluator does")
        return super().act(obs, deterministic)

    def act_member(self, k: int, obs: Tensor, deterministic: bool = True) -> Tensor:
        if self.core is not None:
            raise UserError("a recurrent population evaluates its members together, deterministically: "
                            "set eval.deterministic=true")
        return super().act_member(k, obs, deterministic)

    def initial_state(self, n_envs: int) -> Tensor:
        """``[K, n_envs / K, S]`` zeros: the evaluator's envs are member-major blocks, as the loop's."""
        core = self._core()
        return core.zeros(n_envs // self.members.k, self.params)

    @torch.inference_mode()
    def act_recurrent(self, obs: Tensor, state: Tensor, starts: Tensor,
                      deterministic: bool = True) -> tuple[Tensor, Tensor]:
        """The policy core only (the critic's part of the state stays as it is); sampling from torch's RNG, as
        :meth:`act` does (the evaluator forks it), never from the members' training streams."""
        core = self._core()
        x = self.members.split(obs)
        state = reset_where(state, starts.reshape(self.members.k, -1))
        split = core.policy.state_size
        policy_feats, policy_state = core.policy.step(self.model.features(self.model.policy_input(x)), state[..., :split])
        policy = self.model.policy
        action = policy.mode(policy_feats) if deterministic else policy.sample(policy_feats)[0]
        return self.members.join(action, obs), torch.cat([policy_state, state[..., split:]], -1)

    # -- learning ----------------------------------------------------------------------------------
    def stored_start_state(self, n_envs: int) -> Tensor:
        """The state this rollout started from, ``[K, N, S]``, usable in autograd (a copy made outside
        inference mode); zeros if no rollout was explored (a unit test's made-up rollout)."""
        if self.rollout_start is None or self.rollout_start.shape[1] != n_envs:
            return self._core().zeros(n_envs, self.params)
        return self.rollout_start.clone()

    def rollout_learned(self) -> None:
        """The update is done: the next explore starts a rollout (its state is stored then)."""
        self.rollout_steps = 0

    def replay(self, obs: Obs, actions: Tensor, starts: Tensor, state: Tensor,
               entropy_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """(log pi(a|s), entropy, V(s)) with gradients, ``[K, B*T]`` (env-major: env b's T steps in order), of B
        env sequences ``obs`` ``[K, B, T, *obs]`` (the policy inputs the rollout stored), ``actions``
        ``[K, B, T, ...]``, episode ``starts`` ``[K, B, T]``, from their stored initial ``state`` ``[K, B, S]``:
        the rollout's computation again, step by step."""
        core = self._core()
        feats = self.model.features(obs_map(lambda v: v.transpose(1, 2), obs))  # [K, T, B, features]
        policy_feats, value_feats, _ = core.sequence(feats, state, starts.transpose(1, 2))

        def per_env(h: Tensor) -> Tensor:  # [K, T, B, H] -> [K, B*T, H]
            return h.transpose(1, 2).reshape(h.shape[0], -1, h.shape[-1])

        log_prob, entropy = self.model.policy.log_prob_entropy(per_env(policy_feats), actions.flatten(1, 2), entropy_grad)
        return log_prob, entropy, cast(Tensor, self.model.critic(per_env(value_feats)))
