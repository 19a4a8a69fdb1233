"""The one helper kit every algorithm builds from, on- and off-policy, plain runs and populations.

- optimizers and the gradient step: :func:`make_optimizer` (the one Adam/RMSprop/SGD factory),
  :func:`gradient_step` (backward, optional per-group clipping, step), :func:`anneal_lr`, :func:`metrics`;
- persistence: :class:`Persistent` (``state_dict`` over the attributes an algorithm names);
- target networks and encoders: :func:`frozen_copy`, :func:`encoders`;
- the policy-gradient actor-critic family (REINFORCE, batch/online AC, A2C, A3C, PPO, TRPO):
  :class:`ActorCritic`, :class:`ActorCriticAgent`, the actor-critic step, whole-episode batching;
- the off-policy family (SAC, SAC-V, discrete SAC, off-policy AC, DDPG, TD3): shared hyperparameters,
  action bounds, the temperature α, exploration noise;
- populations (issue 12): the same pieces with a member dimension (:class:`PopulationActorCritic`,
  :class:`MemberTemperature`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence, cast, overload

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlx.buffers.rollout import Rollout
from rlx.config.schema import NetworkConfig
from rlx.config.typed import param
from rlx.envs.make import EnvSpec
from rlx.errors import UserError
from rlx.members import Members, member_view
from rlx.networks.encoders import EncoderFactory
from rlx.networks.flat import flatten_parameters, gather_flat_grads
from rlx.networks.heads import GaussianPolicy, ValueNet, make_policy
from rlx.networks.mlp import ObsNormalizer
from rlx.networks.off_policy import TanhGaussianActor
from rlx.networks.stacked import StackedMLP
from rlx.objectives.distributions import scale_action, unscale_action
from rlx.objectives.noise import GaussianNoise, OrnsteinUhlenbeckNoise
from rlx.objectives.policy import explained_variance, normalize, reinforce_loss, value_loss
from rlx.objectives.returns import gae
from rlx.objectives.targets import sac_temperature_loss
from rlx.optim.stacked import MemberAdam, StackedOptimizer, clip_grad_norm_stacked_, gather_stacked_grads, stack_parameters

# --- optimizers and the gradient step -------------------------------------------------------------

OptimizerName = Literal["adam", "rmsprop", "sgd"]
ON_POLICY_ADAM_EPS = 1e-5  # SB3's PPO/A2C
# SB3's SAC/TD3/DDPG Adam (torch's eps), parameters kept per tensor (their checkpoints' optimizer layout)
OFF_POLICY_ADAM: dict[str, Any] = {"eps": 1e-8, "flat": False}


def make_optimizer(params: Iterable[Tensor] | list[dict], lr: float, name: str = "adam",
                   eps: float = ON_POLICY_ADAM_EPS, alpha: float = 0.99, flat: bool = True) -> torch.optim.Optimizer:
    """Every torch optimizer of rlx: Adam, RMSprop(alpha, eps) as A2C/A3C use it (SB3's defaults), or
    plain SGD (hand-checkable steps).

    Adam uses the fused kernel where torch has one (CPU from torch 2.4, CUDA), else foreach: one kernel
    for all tensors; measured ~15% of a PPO CartPole minibatch update over foreach, 80 us vs 205 us per
    step for a 256x256 twin critic. ``flat``: each parameter group stored as one tensor
    (:func:`flat_param_groups`; per-tensor overhead is most of a small network's step). Off-policy
    algorithms keep their parameters as they are (``flat=False``: their checkpoints store per-tensor
    optimizer state), as does A3C, whose workers hand gradients to the shared parameters one by one.
    """
    groups = flat_param_groups(params) if flat else params
    if name == "adam":
        try:
            return torch.optim.Adam(groups, lr=lr, eps=eps, fused=True)
        except (RuntimeError, TypeError):  # older torch or an unsupported device/dtype
            return torch.optim.Adam(groups, lr=lr, eps=eps, foreach=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=alpha, eps=eps, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, foreach=True)
    raise ValueError(f"unknown optimizer {name!r}")


def flat_param_groups(params: Iterable[Tensor] | list[dict]) -> list[dict]:
    """Optimizer param groups with each group's parameters moved into one flat tensor
    (:func:`rlx.networks.flat.flatten_parameters`: per-tensor optimizer overhead is most of a small
    network's optimizer step)."""
    items: list[Any] = list(params)
    groups: list[dict] = items if items and isinstance(items[0], dict) else [{"params": items}]
    return [{**g, "params": [flatten_parameters(g["params"])]} for g in groups]

def anneal_lr(optimizer: torch.optim.Optimizer, progress: float) -> float:
    """Linear decay to 0 over the run: each param group's lr = its initial lr * (1 - progress).
    The initial lr is kept in the group (``initial_lr``, as torch's schedulers do), so it is checkpointed."""
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * (1.0 - progress)
    return optimizer.param_groups[0]["lr"]

@overload
def gradient_step(optimizer: torch.optim.Optimizer, loss: Tensor, max_grad_norm: float,
                  local_params: Sequence[nn.Parameter] | None = None) -> Tensor: ...
@overload
def gradient_step(optimizer: torch.optim.Optimizer, loss: Tensor, max_grad_norm: None = None,
                  local_params: Sequence[nn.Parameter] | None = None) -> None: ...
@overload
def gradient_step(optimizer: torch.optim.Optimizer, loss: Tensor, max_grad_norm: float | None = None,
                  local_params: Sequence[nn.Parameter] | None = None) -> Tensor | None: ...
def gradient_step(optimizer: torch.optim.Optimizer, loss: Tensor, max_grad_norm: float | None = None,
                  local_params: Sequence[nn.Parameter] | None = None) -> Tensor | None:
    """backward -> (``max_grad_norm``: clip each param group's gradient norm) -> optimizer step; the one
    gradient step of every plain-run algorithm. Returns the overall norm before clipping (None without
    clipping: not computed).

    Each group (the policy, the critic where it has its own learning rate) is clipped on its own, so
    a large critic error does not shrink the policy's step; with one group (A2C, A3C, like SB3) it is
    the usual global clip. ``local_params``: a worker's local copy (A3C) of the parameters the
    optimizer owns, in the same order: the local gradients are handed over before the step.
    """
    optimizer.zero_grad(set_to_none=True)
    for p in local_params or ():  # a worker's local copy is not the optimizer's: clear it too
        p.grad = None
    loss.backward()
    if local_params is not None:
        owned = [p for group in optimizer.param_groups for p in group["params"]]
        for shared, local in zip(owned, local_params, strict=True):
            shared.grad = local.grad
    gather_flat_grads(optimizer)
    if max_grad_norm is None:
        optimizer.step()
        return None
    norms = [nn.utils.clip_grad_norm_(group["params"], max_grad_norm, foreach=True) for group in optimizer.param_groups]
    optimizer.step()
    return torch.linalg.vector_norm(torch.stack(norms)).detach()


def metrics(**values: Tensor) -> dict[str, float]:
    """Scalar tensors (one device) -> floats with ONE device sync (a single ``tolist``), not one per value."""
    return dict(zip(values, torch.stack([v.detach().float() for v in values.values()]).tolist(), strict=True))


def minibatches(n: int, batch_size: int, device: torch.device) -> Iterator[Tensor | slice]:
    """Shuffled index minibatches covering ``n`` samples; the whole batch as one slice when it fits."""
    if batch_size >= n:
        yield slice(None)
        return
    perm = torch.randperm(n, device=device)
    for start in range(0, n, batch_size):
        yield perm[start : start + batch_size]


# --- persistence, target networks, encoders ------------------------------------------------------

class Persistent:
    """``state_dict``/``load_state_dict`` over the attributes named in ``persist``: modules, optimizers,
    :class:`Temperature`, noise (anything with a ``state_dict``) and plain counters."""

    persist: tuple[str, ...] = ()

    def state_dict(self) -> dict:
        state = {name: (v.state_dict() if hasattr(v := getattr(self, name), "state_dict") else v) for name in self.persist}
        members = getattr(self, "members", None)
        if isinstance(members, Members) and members.hypers:  # current values: PBT may have changed them
            state["hypers"] = members.hyper_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in self.persist:
            current = getattr(self, name)
            if hasattr(current, "load_state_dict"):
                current.load_state_dict(state[name])
            else:
                setattr(self, name, state[name])
        members = getattr(self, "members", None)
        if isinstance(members, Members) and "hypers" in state:
            members.load_hyper_state(state["hypers"])
            self.hyperparameters_changed()

    def hyperparameters_changed(self) -> None:
        """``members.hypers`` were written (a resume, a PBT round): an algorithm that keeps some of them
        elsewhere too (an optimizer's per-member lr list, Polyak τ per member) refreshes those copies."""


def encoders(spec: EnvSpec, net: NetworkConfig) -> EncoderFactory:
    """``network.encoder`` for this env's observations: call it for a fresh encoder (None for flat
    vectors with ``mlp``); ``.features`` is what the heads' MLPs take."""
    return EncoderFactory(net.encoder, spec.observation_space)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A target network: a copy that is never optimized (updated by Polyak averaging only)."""
    return copy.deepcopy(module).requires_grad_(False)


# --- the policy-gradient actor-critic family: REINFORCE, batch/online AC, A2C, A3C, PPO, TRPO ------

STEP_KEYS = ("policy_loss", "value_loss", "entropy", "grad_norm")


@dataclass
class PolicyGradientConfig:
    """Hyperparameters REINFORCE and the batch/online actor-critics share; each adds its own fields."""

    lr: float = param(1e-3, gt=0, help="policy learning rate")
    critic_lr: float = param(1e-3, gt=0, help="critic (baseline) V(s) learning rate")
    gamma: float = param(0.99, ge=0, le=1, help="discount (0: only the immediate reward)")
    ent_coef: float = param(0.0, ge=0, help="entropy bonus weight")
    max_grad_norm: float = param(0.5, gt=0, help="gradient-norm clip")
    optimizer: OptimizerName = param("adam", help="adam | rmsprop | sgd")
    anneal_lr: bool = param(False, help="linearly anneal the learning rate(s) to 0 over the run")
    normalize_obs: bool = param(False, help="running observation normalization (stats saved in checkpoints)")
    log_std_init: float = param(0.0, help="initial log std of the Gaussian policy")


class ActorCritic(nn.Module):
    """Observation normalizer + observation encoder + stochastic policy pi(a|s) + state-value critic V(s).

    ``share_encoder`` (default): one encoder (``network.encoder``: a CNN for images, SB3's shared
    features extractor) feeds both heads' MLPs; otherwise each head owns its encoder (an algorithm that
    fits the critic alone, as batch actor-critic does). For flat vectors with ``encoder=mlp`` there is
    no encoder module: two separate MLPs, as before."""

    def __init__(self, spec: EnvSpec, net: NetworkConfig, normalize_obs: bool = False, log_std_init: float = 0.0,
                 critic: bool = True, share_encoder: bool = True):
        super().__init__()
        encoders = EncoderFactory(net.encoder, spec.observation_space)
        if normalize_obs and (encoders.is_cnn or encoders.scale is not None):
            raise UserError("algo.normalize_obs=true does not apply to image observations: pixels are scaled by "
                            "1/255 inside the network; set algo.normalize_obs=false")
        self.normalizer = ObsNormalizer(spec.obs_shape, enabled=normalize_obs)
        self.encoder = encoders() if share_encoder else None
        head_encoder = (lambda: None) if share_encoder else encoders
        self.policy = make_policy(encoders.features, spec.action_space, net.hidden_sizes, net.activation, log_std_init,
                                  head_encoder())
        # critic=False (REINFORCE without baseline): no V network; V(s) reads as 0 everywhere.
        obs_rank = 1 if share_encoder else len(spec.obs_shape)
        self.critic = ValueNet(encoders.features, net.hidden_sizes, net.activation, head_encoder()) if critic \
            else _ZeroValue(obs_rank)

    def features(self, x: Tensor) -> Tensor:
        """What the heads take: a policy input (see :meth:`policy_input`) through the shared encoder (if any)."""
        return x if self.encoder is None else self.encoder(x)

    def policy_input(self, obs: Tensor) -> Tensor:
        """The observation as the networks see it: normalized with the running statistics as they are now."""
        return self.normalizer(obs)

    @torch.inference_mode()
    def explore(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sample a ~ pi(.|s) for a rollout; returns (action, log pi(a|s), V(s)). Updates obs stats first."""
        self.normalizer.update(obs)
        x = self.features(self.policy_input(obs))
        action, log_prob = self.policy.sample(x)
        return action, log_prob, self.critic(x)

    @torch.inference_mode()
    def value(self, obs: Tensor) -> Tensor:
        return self.critic(self.features(self.policy_input(obs)))

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        x = self.features(self.policy_input(obs))
        return self.policy.mode(x) if deterministic else self.policy.sample(x)[0]

    def evaluate_actions(self, x: Tensor, actions: Tensor, entropy_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """(log pi(a|s), entropy, V(s)) with gradients, for the update, from the policy inputs the rollout
        stored (normalized as the policy saw them when it acted, not with later statistics: the PPO ratio
        starts at exactly 1); ``entropy_grad=False`` when the loss does not weight the entropy (it is
        then only logged: fewer nodes in the graph)."""
        x = self.features(x)
        log_prob, entropy = self.policy.log_prob_entropy(x, actions, entropy_grad)
        return log_prob, entropy, self.critic(x)


def stack_actor_critics(models: Sequence[ActorCritic]) -> ActorCritic:
    """K actor-critics of one shape as ONE population model with a member dimension: ``[K, B, ...]``
    inputs -> ``[K, B]`` outputs, member k computed only from its own weights and inputs.

    ``models[0]`` is reused with its head MLPs replaced by :class:`~rlx.networks.stacked.StackedMLP` stacks
    of all K (member k starts exactly as ``models[k]``), a Gaussian log-std of ``[K, 1, A]``, and per-member
    observation statistics; every :class:`ActorCritic` method then works on the member dimension as is. A
    shared encoder (CNN) has one set of weights, so only K=1 (a plain
    run, a population of one) may have one (encoders take any leading dims)."""
    model, k = models[0], len(models)
    if model.encoder is not None and k > 1:
        raise UserError(f"a population of {k} needs network.encoder=mlp on vector observations "
                        "(a CNN encoder is not stacked per member yet); train image tasks as separate runs")
    if any(m.encoder is not None for m in (model.policy, model.critic) if hasattr(m, "encoder")):
        raise ValueError("stack_actor_critics: heads with their own encoders are not supported")
    norm = model.normalizer
    model.normalizer = ObsNormalizer(norm.mean.shape, enabled=norm.enabled, clip=norm.clip, eps=norm.eps, members=k)
    model.normalizer.to(norm.mean.device)
    policy = model.policy
    policy.net = StackedMLP.from_mlps([cast(nn.Sequential, m.policy.net) for m in models])
    if isinstance(policy, GaussianPolicy):
        policy.log_std = nn.Parameter(torch.stack([cast(GaussianPolicy, m.policy).log_std.detach() for m in models]).unsqueeze(1))
    if isinstance(model.critic, ValueNet):
        model.critic.net = StackedMLP.from_mlps([cast(nn.Sequential, cast(ValueNet, m.critic).net) for m in models])
    return model


class _ZeroValue(nn.Module):
    """Stand-in critic V(s) = 0 for policy-only models (no parameters, nothing to train)."""

    def __init__(self, obs_rank: int = 1):
        super().__init__()
        self.obs_rank = obs_rank

    def forward(self, obs: Tensor) -> Tensor:
        return obs.new_zeros(obs.shape[: obs.dim() - self.obs_rank], dtype=torch.float32)


def actor_critic_param_groups(model: ActorCritic, critic_lr: float) -> list[dict]:
    """Policy and critic parameters as two optimizer groups, the critic's with its own learning rate."""
    critic = list(model.critic.parameters())  # none for a policy-only model
    shared = list(model.encoder.parameters()) if model.encoder is not None else []  # a shared CNN: the policy's group
    return [{"params": shared + list(model.policy.parameters())}, *([{"params": critic, "lr": critic_lr}] if critic else [])]


def actor_critic_step(model: ActorCritic, optimizer: torch.optim.Optimizer, obs: Tensor, actions: Tensor,
                      advantages: Tensor, value_targets: Tensor | None, vf_coef: float, ent_coef: float,
                      max_grad_norm: float, local_params: Sequence[nn.Parameter] | None = None) -> Tensor:
    """One gradient step on  L = -mean(log pi(a|s) A) + vf_coef * 1/2 mean((V(s) - target)^2) - ent_coef * mean(H).

    The notes' policy gradient with an advantage (or reward-to-go) weight, critic regression and an
    entropy bonus. ``value_targets`` None: a policy-only step, the critic is left alone.
    Returns the detached [policy_loss, value_loss, entropy, grad_norm] (see ``STEP_KEYS``).
    """
    log_prob, entropy, values = model.evaluate_actions(obs, actions, entropy_grad=ent_coef > 0)
    policy_loss = reinforce_loss(log_prob, advantages)
    entropy_mean = entropy.mean()
    loss = policy_loss
    if value_targets is not None:
        v_loss = value_loss(values, value_targets)
        loss = loss + vf_coef * v_loss
    else:
        v_loss = values.new_zeros(())
    if ent_coef > 0:
        loss = loss - ent_coef * entropy_mean
    norm = gradient_step(optimizer, loss, max_grad_norm, local_params)
    return torch.stack([policy_loss.detach(), v_loss.detach(), entropy_mean.detach(), norm])


def advantage_actor_critic_update(model: ActorCritic, optimizer: torch.optim.Optimizer, rollout: Rollout, *,
                                  gamma: float, lam: float, vf_coef: float, ent_coef: float, max_grad_norm: float,
                                  normalize_advantage: bool = False,
                                  local_params: Sequence[nn.Parameter] | None = None) -> dict[str, float]:
    """One :func:`actor_critic_step` on a whole [T, N] rollout with GAE(lambda) advantages and A + V(s)
    value targets: lambda=1 gives n-step returns to the rollout end (A2C/A3C), lambda=0 the one-step
    TD error r + gamma V(s') - V(s) (online actor-critic). Truncated episodes bootstrap V(final obs)."""
    advantages = gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done, gamma, lam)
    returns = (advantages + rollout.values).reshape(-1)
    obs, actions = rollout.flat("obs", "actions")
    weights = normalize(advantages.reshape(-1)) if normalize_advantage else advantages.reshape(-1)
    stats = actor_critic_step(model, optimizer, obs, actions, weights, returns, vf_coef, ent_coef, max_grad_norm, local_params)
    metrics = dict(zip(STEP_KEYS, stats.tolist(), strict=True))
    if returns.numel() > 1:
        metrics["explained_variance"] = explained_variance(rollout.values.reshape(-1), returns).item()
    return metrics


class ActorCriticAgent(Persistent):
    """Acting and persistence shared by the policy-gradient family: an :class:`ActorCritic` ``model``,
    its ``optimizer`` and an ``updates`` counter. Subclasses add ``update`` (and their own ``__init__``
    where the default, for a :class:`PolicyGradientConfig`, does not fit); those that batch whole
    episodes add ``"episodes"`` to ``persist``."""

    persist: tuple[str, ...] = ("model", "optimizer", "updates")

    hp: Any  # the algorithm's Config; ``anneal`` reads its ``anneal_lr``
    model: ActorCritic
    optimizer: torch.optim.Optimizer
    updates: int = 0
    episodes: CompleteEpisodes | None = None  # whole-episode batching, if the algorithm uses it

    def __init__(self, spec: EnvSpec, hp: PolicyGradientConfig, net: NetworkConfig, device: torch.device, critic: bool = True,
                 share_encoder: bool = True):
        """Policy and critic V(s) (none with ``critic=False``), one optimizer with a learning rate each."""
        self.hp, self.device = hp, device
        self.model = ActorCritic(spec, net, hp.normalize_obs, hp.log_std_init, critic=critic,
                                 share_encoder=share_encoder).to(device)
        self.optimizer = make_optimizer(actor_critic_param_groups(self.model, hp.critic_lr), hp.lr, hp.optimizer)
        self.updates = 0

    def explore(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.model.explore(obs)

    def value(self, obs: Tensor) -> Tensor:
        return self.model.value(obs)

    @torch.inference_mode()
    def policy_input(self, obs: Tensor) -> Tensor | None:
        """What the rollout stores for ``obs`` just after :meth:`explore`: the normalized observation the
        policy acted on (None without normalization: the raw observation is what it saw)."""
        return self.model.policy_input(obs) if self.model.normalizer.enabled else None

    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.model.act(obs, deterministic)

    def anneal(self, progress: float) -> float:
        """The learning rate for this update: linearly decayed when the config says ``anneal_lr``."""
        if self.hp.anneal_lr:
            return anneal_lr(self.optimizer, progress)
        return self.optimizer.param_groups[0]["lr"]


class CompleteEpisodes:
    """Turns [T, N] rollouts into flat batches of whole episodes (REINFORCE, batch actor-critic).

    Per env, the steps after its last episode end in a rollout are held back and prepended to that
    env's part of the next rollout, so every batch holds complete episodes only, in time order, each
    ending with ``done`` (Monte-Carlo returns need the whole episode; no step is thrown away). Steps
    of an episode that straddles an update were sampled by the policy before it: the price of not
    wasting them. ``state_dict`` keeps the held-back steps so a resumed run continues its episodes.
    """

    FIELDS = ("obs", "actions", "rewards", "terminated", "done", "next_values")

    def __init__(self) -> None:
        self.pending: list[dict[str, Tensor]] = []

    def __call__(self, rollout: Rollout) -> dict[str, Tensor] | None:
        """The complete episodes available after this rollout as flat [L, ...] tensors (None if none)."""
        n_envs = rollout.rewards.shape[1]
        if not self.pending:
            self.pending = [{f: getattr(rollout, f)[:0, i].clone() for f in self.FIELDS} for i in range(n_envs)]
        parts: dict[str, list[Tensor]] = {f: [] for f in self.FIELDS}
        for i, held in enumerate(self.pending):
            seq = {f: torch.cat([held[f], getattr(rollout, f)[:, i]]) for f in self.FIELDS}
            ends = torch.nonzero(seq["done"]).flatten()
            cut = int(ends[-1]) + 1 if len(ends) else 0
            for f in self.FIELDS:
                parts[f].append(seq[f][:cut])
                held[f] = seq[f][cut:]
        batch = {f: torch.cat(v) for f, v in parts.items()}
        return batch if batch["done"].numel() else None

    def state_dict(self) -> list[dict[str, Tensor]]:
        return self.pending

    def load_state_dict(self, state: list[dict[str, Tensor]]) -> None:
        self.pending = state


# --- the off-policy family: SAC, SAC-V, discrete SAC, off-policy AC, DDPG, TD3 ----------------------

@dataclass
class OffPolicyCommon:
    """Hyperparameters every off-policy algorithm has (defaults: SB3's SAC/TD3 defaults)."""

    lr: float = param(3e-4, gt=0, help="Adam learning rate (actor, critics and temperature)")
    gamma: float = param(0.99, ge=0, le=1, help="discount (0: only the immediate reward)")
    tau: float = param(0.005, gt=0, le=1, help="Polyak factor of the target networks (1: hard copy)")
    buffer_size: int = param(1_000_000, ge=1, help="replay buffer capacity (transitions)")
    learning_starts: int = param(100, ge=0, help="env steps of uniform random actions before learning")
    batch_size: int = param(256, ge=1, help="minibatch size per gradient step")
    train_freq: int = param(1, ge=1, help="vector-env steps between trainings")
    gradient_steps: int = param(1, ge=1, help="gradient steps per training")


@dataclass
class EntropyCommon(OffPolicyCommon):
    """The maximum-entropy algorithms' temperature α (SAC family)."""

    alpha: float | str = param("auto", help="entropy temperature: a positive number, or 'auto' to learn it")

    def __post_init__(self) -> None:
        if not (self.alpha == "auto" or (isinstance(self.alpha, float) and self.alpha > 0)):
            raise UserError(f"algo.alpha={self.alpha!r}: expected a positive number or 'auto'")


class ActionBounds:
    """The env's Box [low, high]; actors work in the unit box [-1, 1]^d."""

    def __init__(self, space: gym.Space, device: torch.device):
        space = cast(gym.spaces.Box, space)  # continuous algorithms only: run.check_action_space admitted a Box
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise UserError(f"action space {space}: bounded (finite low/high) actions are required")
        self.low = torch.as_tensor(space.low, dtype=torch.float32, device=device)
        self.high = torch.as_tensor(space.high, dtype=torch.float32, device=device)
        self.dim = int(np.prod(space.shape))

    def to_env(self, a_unit: Tensor) -> Tensor:
        return scale_action(a_unit, self.low, self.high)

    def to_unit(self, a_env: Tensor) -> Tensor:
        return unscale_action(a_env, self.low, self.high)


class Temperature:
    """Entropy temperature α = exp(log α): fixed, or learned toward a target entropy H̄ (SAC's
    automatic entropy tuning; starts at α=1 as SB3's ``ent_coef='auto'``)."""

    def __init__(self, alpha: float | str, target_entropy: float, lr: float, device: torch.device):
        self.learned = alpha == "auto"
        self.target_entropy = target_entropy
        self.log_alpha = torch.tensor(0.0 if self.learned else math.log(float(alpha)), device=device,
                                      requires_grad=self.learned)
        self.optimizer = make_optimizer([self.log_alpha], lr, **OFF_POLICY_ADAM) if self.learned else None

    def value(self) -> Tensor:
        """α as a detached tensor (a copy: later temperature steps do not change it)."""
        return self.log_alpha.detach().exp()

    def update(self, loss_fn: Callable[..., Tensor], *policy_terms: Tensor) -> Tensor:
        """One step on ``loss_fn(log α, *policy_terms, H̄)`` when learned; returns the loss (0 when fixed)."""
        if self.optimizer is None:
            return torch.zeros((), device=self.log_alpha.device)
        loss = loss_fn(self.log_alpha, *policy_terms, self.target_entropy)
        gradient_step(self.optimizer, loss)
        return loss.detach()

    def state_dict(self) -> dict:
        return {"log_alpha": self.log_alpha.detach().clone(),
                "optimizer": self.optimizer.state_dict() if self.optimizer else None}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])


class ExplorationNoise:
    """Per-env action noise for deterministic policies (a_t = μ(s_t) + N_t), in the unit box.

    One process per parallel env, so an episode end resets only its own env's OU state. The processes
    are created on the first call (the number of envs is known then); their RNG is seeded from torch's
    (seeded) RNG, and everything is in ``state_dict`` for an exact resume.
    """

    def __init__(self, kind: Literal["ou", "gaussian"], sigma: float, dim: int):
        self.kind, self.sigma, self.dim = kind, sigma, dim
        self.seed = int(torch.randint(2**31 - 1, ()).item())
        self.processes: list[Any] = []

    def _ensure(self, n: int) -> None:
        while len(self.processes) < n:
            rng = np.random.default_rng([self.seed, len(self.processes)])
            self.processes.append(OrnsteinUhlenbeckNoise(self.dim, sigma=self.sigma, rng=rng) if self.kind == "ou"
                                  else GaussianNoise(self.dim, self.sigma, rng=rng))

    def sample(self, n: int) -> np.ndarray:
        """``[n, dim]`` noise, one row per env."""
        self._ensure(n)
        return np.stack([p.sample() for p in self.processes[:n]]).astype(np.float32)

    def reset(self, done: np.ndarray) -> None:
        for i in np.flatnonzero(done):
            if i < len(self.processes):
                self.processes[i].reset()

    def state_dict(self) -> dict:
        return {"processes": [p.state_dict() for p in self.processes]}

    def load_state_dict(self, state: dict) -> None:
        self._ensure(len(state["processes"]))
        for p, s in zip(self.processes, state["processes"], strict=False):
            p.load_state_dict(s)


class TanhGaussianAgent(Persistent):
    """Acting with a tanh-Gaussian actor rescaled to the env's Box (SAC, SAC-V, off-policy AC).

    Builds ``actor``, its optimizer and the action ``bounds``; the algorithm adds its critics.
    """

    def __init__(self, spec: EnvSpec, hp: OffPolicyCommon, net: NetworkConfig, device: torch.device):
        self.hp, self.device = hp, device
        self.bounds = ActionBounds(spec.action_space, device)
        self.encoders = enc = encoders(spec, net)
        self.actor = TanhGaussianActor(enc.features, self.bounds.dim, net.hidden_sizes, net.activation, encoder=enc()).to(device)
        self.actor_opt = make_optimizer(self.actor.parameters(), hp.lr, **OFF_POLICY_ADAM)
        self.updates = 0

    @torch.inference_mode()
    def explore(self, obs: Tensor) -> Tensor:
        return self.bounds.to_env(self.actor.sample(obs)[0])

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.bounds.to_env(self.actor.mode(obs) if deterministic else self.actor.sample(obs)[0])


# --- populations (issue 12): the pieces above with a member dimension ----------------------------

class PopulationActorCritic(Persistent):
    """Acting, member layout, optimizer step and persistence of an on-policy actor-critic population of
    K members (PPO, A2C); a plain run is K=1, the same code. Subclasses set ``optimizer`` (a stacked
    optimizer over ``params``) and ``update``.

    - ``model``: K :class:`ActorCritic` s stacked (:func:`stack_actor_critics`), member k initialized as
      its plain run would be (``torch.manual_seed(seeds[k])`` first; no seeds: the current RNG state);
    - ``params``: every member's parameters as one ``[K, P]`` buffer, so an optimizer step and gradient
      clipping are a few whole-tensor ops for all members;
    - the loop's env batch is member-major (envs ``k*N .. (k+1)*N - 1`` are member k's): acting splits
      it into ``[K, N, ...]`` and joins the outputs back (:class:`rlx.members.Members`);
    - hyperparameters every subclass shares are ``[K, 1]`` tensors: lr, gamma, ent/vf coefficients,
      max_grad_norm, anneal_lr.
    """

    optimizer: StackedOptimizer
    persist = ("model", "optimizer", "updates", "random")

    def __init__(self, spec: EnvSpec, hps: Sequence[Any], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        self.hp, self.hps, self.device = hps[0], list(hps), device
        self.n_steps = self.hp.n_steps
        self.members = m = Members(len(hps), device, spec.obs_shape, seeds)
        self.random = m.random  # member k's actions and shuffles from its own stream (its plain run's)
        models = []
        for k, h in enumerate(hps):
            if seeds is not None:
                torch.manual_seed(seeds[k])
            models.append(ActorCritic(spec, net, h.normalize_obs, h.log_std_init))
        self.model = stack_actor_critics(models).to(device)
        self.params = stack_parameters(list(self.model.parameters()), members=len(hps))
        self.member_views: dict[int, ActorCritic] = {}  # act_member's one-member views, by member
        self.lr, self.gamma = m.hyper(hps, "lr"), m.hyper(hps, "gamma")
        self.ent_coef, self.vf_coef = m.hyper(hps, "ent_coef"), m.hyper(hps, "vf_coef")
        self.max_grad_norm = m.hyper(hps, "max_grad_norm")
        self.anneal_lr = m.hyper(hps, "anneal_lr")
        self.updates = 0

    # -- acting (the loop's env batch [..., K*N, *obs] <-> the members' [K, B, *obs]) -----------------
    @torch.inference_mode()
    def explore(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(action, log pi(a|s), V(s)) for the loop's ``[K*N, *obs]``; updates each member's obs statistics."""
        x = self.members.split(obs)
        self.model.normalizer.update(x)
        feats = self.model.features(self.model.policy_input(x))
        action, log_prob = self.model.policy.sample(feats, self.random)
        j = self.members.join
        return j(action, obs), j(log_prob, obs), j(self.model.critic(feats), obs)

    @torch.inference_mode()
    def policy_input(self, obs: Tensor) -> Tensor | None:
        """The normalized observation the policy acted on (None without normalization)."""
        if not self.model.normalizer.enabled:
            return None
        return self.members.join(self.model.policy_input(self.members.split(obs)), obs)

    @torch.inference_mode()
    def value(self, obs: Tensor) -> Tensor:
        return self.members.join(self.model.value(self.members.split(obs)), obs)

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.members.join(self.model.act(self.members.split(obs), deterministic), obs)

    @torch.inference_mode()
    def act_member(self, k: int, obs: Tensor, deterministic: bool = True) -> Tensor:
        """Member k's action for ``obs`` ``[B, *obs]`` (its evaluation) from member k's weights alone: a
        one-member view of the stack (:func:`rlx.members.member_view`, built once: its tensors are views,
        so it always acts with the current weights and statistics). Running all K and keeping row k cost
        K member forwards per call, K^2 over a population's evaluations."""
        if self.members.k == 1:
            return self.model.act(obs.unsqueeze(0), deterministic)[0]
        if k not in self.member_views:
            self.member_views[k] = cast(ActorCritic, member_view(self.model, k, self.members.k))
        return self.member_views[k].act(obs.unsqueeze(0), deterministic)[0]

    # -- learning ----------------------------------------------------------------------------------
    def anneal(self, progress: float) -> Tensor:
        """This update's ``[K, 1]`` learning rates (linearly decayed for members with anneal_lr), set."""
        lr = torch.where(self.anneal_lr > 0, self.lr * (1.0 - progress), self.lr)
        self.optimizer.set("lr", lr)
        return lr

    def gradient_step(self, loss: Tensor, active: Tensor | None = None) -> Tensor:
        """backward of the members' ``[K]`` losses -> each member's gradient clipped to its own max norm ->
        one optimizer step for the ``active`` members (default: those still training). Members are
        independent, so d(sum of the losses)/d(member k's weights) = d(loss_k)/d(member k's weights).
        Returns the ``[K]`` gradient norms before clipping."""
        active = self.members.active if active is None else active
        self.optimizer.zero_grad()
        loss.sum().backward()
        gather_stacked_grads(self.params)
        assert self.params.grad is not None
        norms = clip_grad_norm_stacked_(self.params.grad, self.max_grad_norm[:, 0])
        self.optimizer.step(None if bool(active.all()) else active)
        return norms.detach()



class MemberTemperature:
    """:class:`Temperature` for a population (issue 12): member k's α = exp(log α_k), ``[K, 1]``, fixed
    (its number) or learned (``'auto'``, from α=1) per member, both kinds in one population: one ``[K, 1]``
    log α whose fixed rows are masked out of the loss and the optimizer step."""

    def __init__(self, alphas: Sequence[float | str], target_entropy: float, lrs: Sequence[float], device: torch.device):
        learned = [a == "auto" for a in alphas]
        self.learned = torch.tensor(learned, device=device)
        self.any_learned = any(learned)
        self.target_entropy = target_entropy
        self.log_alpha = torch.tensor([[0.0 if auto else math.log(float(a))] for a, auto in zip(alphas, learned, strict=True)],
                                      device=device, requires_grad=True)
        # an optimizer even when every α is fixed (it never steps then): one state layout for every member
        self.optimizer = MemberAdam([self.log_alpha], lrs)

    def value(self) -> Tensor:
        """``[K, 1]`` α, detached (a copy: later temperature steps do not change it)."""
        return self.log_alpha.detach().exp()

    def update(self, log_prob: Tensor, mask: Tensor | None = None) -> Tensor:
        """One step of the learned members (``mask``: of those, only the active ones) on
        ``sac_temperature_loss`` with ``log_prob`` ``[K, B]``; returns the ``[K]`` losses (0 where fixed)."""
        if not self.any_learned:
            return log_prob.new_zeros(log_prob.shape[0])
        loss = sac_temperature_loss(self.log_alpha, log_prob, self.target_entropy, dim=1) * self.learned
        step = self.learned if mask is None else self.learned & mask
        self.optimizer.minimize(loss, None if bool(step.all()) else step)
        return loss.detach()

    def state_dict(self) -> dict:
        return {"log_alpha": self.log_alpha.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"].reshape(self.log_alpha.shape))
        self.optimizer.load_state_dict(state["optimizer"])
