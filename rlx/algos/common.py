"""The one helper kit every algorithm builds from, on- and off-policy, plain runs and populations.

- optimizers and the gradient step: :func:`make_optimizer` (the one Adam/RMSprop/SGD factory),
  :func:`gradient_step` (backward, optional per-group clipping, step), :func:`anneal_lr`, :func:`metrics`;
- persistence: :class:`Persistent` (``state_dict`` over the attributes an algorithm names);
- target networks and encoders: :func:`frozen_copy`, :func:`encoders`;
- the policy-gradient actor-critic family (REINFORCE, batch/online AC, A2C, A3C, PPO, TRPO):
  :class:`ActorCritic`, whole-episode batching (:class:`CompleteEpisodes`);
- the off-policy family (SAC, SAC-V, discrete SAC, off-policy AC, DDPG, TD3): shared hyperparameters,
  action bounds, the temperature α, exploration noise;
- populations (issue 12): the same pieces with a member dimension (:class:`PopulationAgent` and its
  :class:`PopulationActorCritic`, :class:`PopulationPolicyGradient`; the
  off-policy pieces above have one throughout: a plain run is K=1).
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
from rlx.networks.dict_obs import Obs
from rlx.networks.encoders import CNNEncoder, DictEncoder, EncoderFactory
from rlx.networks.flat import flatten_parameters, gather_flat_grads
from rlx.networks.heads import GaussianPolicy, ValueNet, make_policy
from rlx.networks.mlp import ObsNormalizer
from rlx.networks.off_policy import (
    MemberQEnsemble,
    MemberTanhGaussianActor,
    MemberValueNet,
    QEnsemble,
    TanhGaussianActor,
    has_weights,
)
from rlx.networks.recurrent import RecurrentCores
from rlx.networks.stacked import StackedCNNEncoder, StackedMLP
from rlx.objectives.distributions import scale_action, unscale_action
from rlx.objectives.noise import GaussianNoise, OrnsteinUhlenbeckNoise
from rlx.objectives.policy import masked_mean
from rlx.objectives.targets import sac_temperature_loss
from rlx.optim.stacked import (
    MemberAdam,
    StackedOptimizer,
    clip_grad_norm_stacked_,
    gather_stacked_grads,
    make_stacked_optimizer,
    stack_parameters,
)

# --- optimizers and the gradient step -------------------------------------------------------------

OptimizerName = Literal["adam", "rmsprop", "sgd"]
ON_POLICY_ADAM_EPS = 1e-5  # SB3's PPO/A2C (the off-policy family steps with rlx.optim.stacked.MemberAdam)


def make_optimizer(params: Iterable[Tensor] | list[dict], lr: float, name: str = "adam",
                   eps: float = ON_POLICY_ADAM_EPS, alpha: float = 0.99, flat: bool = True) -> torch.optim.Optimizer:
    """Every torch optimizer of rlx: Adam, RMSprop(alpha, eps) as A2C/A3C use it (SB3's defaults), or
    plain SGD (hand-checkable steps).

    Adam uses the fused kernel where torch has one (CPU from torch 2.4, CUDA), else foreach: one kernel
    for all tensors; measured ~15% of a PPO CartPole minibatch update over foreach, 80 us vs 205 us per
    step for a 256x256 twin critic. ``flat``: each parameter group stored as one tensor
    (:func:`flat_param_groups`; per-tensor overhead is most of a small network's step). A3C keeps its
    parameters as they are (``flat=False``): its workers hand gradients to the shared parameters one by one.
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
    return EncoderFactory(net.encoder, spec.observation_space, net.dict_keys)


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
        encoders = EncoderFactory(net.encoder, spec.observation_space, net.dict_keys)
        if normalize_obs and not encoders.is_dict and (encoders.is_cnn or encoders.scale is not None):
            raise UserError("algo.normalize_obs=true does not apply to image observations: pixels are scaled by "
                            "1/255 inside the network; set algo.normalize_obs=false")
        # a Dict observation: its vector keys are normalized, its image keys (uint8/bool) pass through as they are
        keep = None if encoders.layout is None else torch.from_numpy(encoders.layout.keep_mask())
        self.normalizer = ObsNormalizer(spec.obs_shape, enabled=normalize_obs, keep=keep)
        self.encoder = encoders() if share_encoder else None
        head_encoder = (lambda: None) if share_encoder else encoders
        # network.recurrent (PPO, A2C): a policy core and a critic core between the features and the heads; the
        # stateful acting and the sequence replay are the algorithm's (rlx.algos.recurrent), the heads as they are
        self.core: RecurrentCores | None = None if net.recurrent == "none" else \
            RecurrentCores(net.recurrent, encoders.features, net.recurrent_hidden, net.recurrent_layers)
        head_in = encoders.features if self.core is None else self.core.hidden
        self.policy = make_policy(head_in, spec.action_space, net.hidden_sizes, net.activation, log_std_init,
                                  head_encoder())
        # critic=False (REINFORCE without baseline): no V network; V(s) reads as 0 everywhere.
        obs_rank = 1 if share_encoder else len(spec.obs_shape)
        self.critic = ValueNet(head_in, net.hidden_sizes, net.activation, head_encoder()) if critic \
            else _ZeroValue(obs_rank)

    def features(self, x: Obs) -> Tensor:
        """What the heads take: a policy input (see :meth:`policy_input`) through the shared encoder (if any; a
        Dict observation always has one, which takes the packed vector or the stored per-key tensors)."""
        return cast(Tensor, x) if self.encoder is None else self.encoder(x)

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

    def evaluate_actions(self, x: Obs, actions: Tensor, entropy_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
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
    shared CNN encoder becomes a :class:`~rlx.networks.stacked.StackedCNNEncoder` of all K (its parameters
    member-first, so they join the ``[K, P]`` buffer), K=1 included: a plain run is a population of one, so a
    member's checkpoint (its rows of every stack) is a plain run's and resumes or evaluates alone. A ``Flatten``
    encoder has no weights and stays as it is."""
    model, k = models[0], len(models)
    if isinstance(model.encoder, CNNEncoder):
        model.encoder = StackedCNNEncoder.from_encoders([cast(CNNEncoder, m.encoder) for m in models])
    if isinstance(model.encoder, DictEncoder):  # each image key's CNN stacked over the members
        dict_encoder = model.encoder
        for name in list(dict_encoder.encoders):
            dict_encoder.encoders[name] = StackedCNNEncoder.from_encoders(
                [cast(CNNEncoder, cast(DictEncoder, m.encoder).encoders[name]) for m in models])
    if k > 1 and any(m.encoder is not None for m in (model.policy, model.critic) if hasattr(m, "encoder")):
        raise ValueError("stack_actor_critics: heads with their own encoders are not supported")
    norm = model.normalizer
    model.normalizer = ObsNormalizer(norm.mean.shape, enabled=norm.enabled, clip=norm.clip, eps=norm.eps, members=k,
                                     keep=norm.keep)
    model.normalizer.to(norm.mean.device)
    policy = model.policy
    policy.net = StackedMLP.from_mlps([cast(nn.Sequential, m.policy.net) for m in models])
    if isinstance(policy, GaussianPolicy):
        policy.log_std = nn.Parameter(torch.stack([cast(GaussianPolicy, m.policy).log_std.detach() for m in models]).unsqueeze(1))
    if isinstance(model.critic, ValueNet):
        model.critic.net = StackedMLP.from_mlps([cast(nn.Sequential, cast(ValueNet, m.critic).net) for m in models])
    if model.core is not None:  # already [1, ...] stacks: member k's rows are models[k]'s
        model.core = RecurrentCores.stack([cast(RecurrentCores, m.core) for m in models])
    return model


class _ZeroValue(nn.Module):
    """Stand-in critic V(s) = 0 for policy-only models (no parameters, nothing to train)."""

    def __init__(self, obs_rank: int = 1):
        super().__init__()
        self.obs_rank = obs_rank

    def forward(self, obs: Tensor) -> Tensor:
        return obs.new_zeros(obs.shape[: obs.dim() - self.obs_rank], dtype=torch.float32)


@dataclass
class EpisodeBatch:
    """Each member's complete episodes as ``[K, L, ...]`` tensors: member k's samples are its first
    ``count[k]`` rows (``mask`` 1), in its plain run's order (its first env's episodes, then its second's,
    ...); the rest of the row is zero padding up to the longest member's ``L``."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    done: Tensor
    next_values: Tensor
    mask: Tensor  # [K, L] float: 1 on member k's own samples
    count: Tensor  # [K] long: member k's batch length (0: none of its episodes has ended yet)


class CompleteEpisodes:
    """Turns ``[T, K*N]`` rollouts (member-major envs) into each member's batch of whole episodes
    (REINFORCE, batch actor-critic).

    Per env, the steps after its last episode end in a rollout are held back and prepended to that
    env's part of the next rollout, so every batch holds complete episodes only, in time order, each
    ending with ``done`` (Monte-Carlo returns need the whole episode; no step is thrown away). Steps
    of an episode that straddles an update were sampled by the policy before it: the price of not
    wasting them.

    Members' episodes end at different times, so member k's batch has its own length L_k. The batch is
    padded to the longest with a mask (:class:`EpisodeBatch`) rather than split into K batches: one
    forward, one backward and one stacked optimizer step then serve every member (K separate batches
    would cost K of each, the per-op overhead that dominates these small networks), and the losses are
    masked means, so member k's update is its plain run's (K=1: the mask is all ones). The held-back steps
    are whole tensors too (``[K*N, H, ...]``, env e's first ``held_len[e]`` valid): joined to a rollout and
    cut at each env's last episode end by index arithmetic, not by a Python loop over the envs.

    ``state_dict``: the held-back steps as ``[K, N, H, ...]`` and their lengths ``[K, N]`` (member k's part is
    row k, in a plain run's layout), so a resumed run continues its episodes.
    """

    FIELDS = ("obs", "actions", "rewards", "terminated", "done", "next_values")

    def __init__(self, members: int = 1):
        self.k = members
        self.held: dict[str, Tensor] = {}  # per field [E, H, ...]: env e's held-back steps, left-aligned
        self.held_len: Tensor | None = None  # [E]

    def __call__(self, rollout: Rollout) -> EpisodeBatch | None:
        """Every member's complete episodes available after this rollout (None if no member has one)."""
        new = {f: getattr(rollout, f).movedim(0, 1) for f in self.FIELDS}  # [E, T, ...]
        n_envs, t = new["done"].shape
        device = new["done"].device
        rows = torch.arange(n_envs, device=device).unsqueeze(1)
        held_len = torch.zeros(n_envs, dtype=torch.long, device=device) if self.held_len is None \
            else self.held_len.to(device)
        longest_held = int(held_len.max())
        span = longest_held + t
        j = torch.arange(span, device=device).unsqueeze(0)  # [1, S]: position in env e's joined sequence
        if longest_held:  # env e's sequence: its held steps, then the rollout's T steps
            from_held = j < held_len.unsqueeze(1)
            at_held = j.clamp(max=longest_held - 1).expand(n_envs, -1)
            at_new = (j - held_len.unsqueeze(1)).clamp(0, t - 1)
            seq = {f: torch.where(_trailing(from_held, v), self.held[f].to(device)[rows, at_held], v[rows, at_new])
                   for f, v in new.items()}
        else:
            seq = new
        length = held_len + t
        ends = seq["done"].bool() & (j < length.unsqueeze(1))
        cut = torch.where(ends, j + 1, torch.zeros_like(j)).amax(1)  # [E]: just after env e's last episode end
        keep = length - cut
        at_kept = (cut.unsqueeze(1) + torch.arange(int(keep.max()), device=device)).clamp(max=span - 1)
        self.held, self.held_len = {f: v[rows, at_kept] for f, v in seq.items()}, keep
        # member k's batch: its envs' complete parts in env order (row-major over (env, position))
        complete = (j < cut.unsqueeze(1)).reshape(self.k, -1)  # [K, N*S]
        count = complete.sum(1)
        longest = int(count.max())
        if longest == 0:
            return None
        order = torch.argsort((~complete).to(torch.int8), dim=1, stable=True)[:, :longest]  # samples first, in order
        mask = torch.arange(longest, device=device).unsqueeze(0) < count.unsqueeze(1)
        members = torch.arange(self.k, device=device).unsqueeze(1)
        fields = {}
        for f, v in seq.items():
            x = v.reshape(self.k, -1, *v.shape[2:])[members, order]
            fields[f] = torch.where(_trailing(mask, x), x, torch.zeros_like(x))
        return EpisodeBatch(**fields, mask=mask.float(), count=count)

    def state_dict(self) -> dict[str, Tensor]:
        if self.held_len is None:
            return {}
        k, n = self.k, self.held_len.numel() // self.k
        return {"length": self.held_len.reshape(k, n).clone(),
                **{f: v.reshape(k, n, *v.shape[1:]).clone() for f, v in self.held.items()}}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if not state:
            self.held, self.held_len = {}, None
            return
        envs = state["length"].numel()
        self.held_len = state["length"].reshape(envs).long()
        self.held = {f: state[f].reshape(envs, *state[f].shape[2:]) for f in self.FIELDS}


def _trailing(mask: Tensor, like: Tensor) -> Tensor:
    """``mask`` with trailing singleton dims to broadcast against ``like`` (a field with event dims)."""
    return mask.reshape(*mask.shape, *([1] * (like.dim() - mask.dim())))


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
    """Entropy temperature α of K members (SAC's automatic entropy tuning; a plain run is K=1): member k's
    α = exp(log α_k), ``[K, 1]``, fixed (its number) or learned toward the target entropy H̄ (``'auto'``,
    from α=1 as SB3's ``ent_coef='auto'``), both kinds in one population: one ``[K, 1]`` log α whose fixed
    rows are masked out of the loss and the optimizer step. ``target_entropy``: one H̄ for all, or ``[K, 1]``."""

    def __init__(self, alphas: Sequence[float | str], target_entropy: float | Tensor, lrs: Sequence[float],
                 device: torch.device):
        learned = [a == "auto" for a in alphas]
        self.learned = torch.tensor(learned, device=device)
        self.any_learned, self.all_learned = any(learned), all(learned)
        self.learned_members = [k for k, auto in enumerate(learned) if auto]  # no data-dependent op to find them
        self.target_entropy = target_entropy
        self.log_alpha = torch.tensor([[0.0 if auto else math.log(float(a))] for a, auto in zip(alphas, learned, strict=True)],
                                      device=device, requires_grad=True)
        # an optimizer even when every α is fixed (it never steps then): one state layout for every member
        self.optimizer = MemberAdam([self.log_alpha], lrs)

    def value(self) -> Tensor:
        """``[K, 1]`` α, detached (a copy: later temperature steps do not change it)."""
        return self.log_alpha.detach().exp()

    def update(self, *policy_terms: Tensor, mask: Tensor | None = None,
               loss_fn: Callable[..., Tensor] = sac_temperature_loss) -> Tensor:
        """One step of the learned members (``mask``: of those, only the active ones) on
        ``loss_fn(log α, *policy_terms, H̄, dim=1)``: :func:`sac_temperature_loss` of log π(a|s) ``[K, B]``
        by default (discrete SAC: its exact expectation over π, log π ``[K, B, A]``). Returns the ``[K]``
        losses (0 where fixed)."""
        if not self.any_learned:
            return policy_terms[0].new_zeros(policy_terms[0].shape[0])
        loss = loss_fn(self.log_alpha, *policy_terms, self.target_entropy, dim=1) * self.learned
        if mask is None:  # no data-dependent test in the common case (a compiled step traces it as is)
            self.optimizer.minimize(loss, None if self.all_learned else self.learned_members)
            return loss.detach()
        step = self.learned & mask
        self.optimizer.minimize(loss, None if bool(step.all()) else step)
        return loss.detach()

    def state_dict(self) -> dict:
        return {"log_alpha": self.log_alpha.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"].reshape(self.log_alpha.shape))
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


def check_member_observations(spec: EnvSpec, net: NetworkConfig, members: int) -> None:
    """An off-policy population of ``members`` on these observations, refused in one line where it cannot be
    built yet: an observation encoder with weights for K > 1 (not stacked per member yet), or a Dict's image
    keys (no uint8 population replay). A plain run (K=1) takes any; a Dict of vector keys is weightless: any K.
    The driver calls this before any run dir is written (:func:`rlx.train.run.check_population_spaces`)."""
    if members < 2:
        return
    enc = encoders(spec, net)
    if has_weights(enc()):
        raise UserError(f"a population of {members} needs network.encoder=mlp on vector observations (an observation "
                        "encoder is not stacked per member yet); train image tasks as separate runs")
    images = [] if enc.layout is None else [k.name for k in enc.layout.keys if k.uint8]
    if images:
        raise UserError(f"a population of {members} on Dict observations with image keys ({', '.join(images)}) is not "
                        "supported yet (a population's replay buffer is float32 vectors only); train them as separate runs")


def member_encoders(spec: EnvSpec, net: NetworkConfig, members: int) -> EncoderFactory:
    """:func:`encoders` for an off-policy population of ``members``, after :func:`check_member_observations`."""
    check_member_observations(spec, net, members)
    return encoders(spec, net)


class TanhGaussianAgent(Persistent):
    """K members acting with tanh-Gaussian actors rescaled to the env's Box (SAC, SAC-V, off-policy AC); a
    plain run is K=1, the same code. Sets up the member layout (``members``, each member's own random
    stream ``random``), the action ``bounds`` and the ``encoders``; the algorithm builds its networks,
    each member's after ``torch.manual_seed(seeds[k])`` as its plain run (:meth:`seed_member`), and sets
    ``actor`` (:class:`~rlx.networks.off_policy.MemberTanhGaussianActor`). The loop's env batch is
    member-major: envs ``k*N .. (k+1)*N - 1`` are member k's."""

    actor: MemberTanhGaussianActor
    observation_spaces = ("box", "dict")  # Dict: packed vectors, rlx.buffers.replay.DictReplayBuffer for image keys

    def __init__(self, spec: EnvSpec, hps: Sequence[Any], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        self.hp, self.hps, self.device, self.seeds = hps[0], list(hps), device, seeds
        self.members = Members(len(hps), device, spec.obs_shape, seeds)
        self.random = self.members.random  # actions, replay minibatches, warm-up actions: member k's own stream
        self.bounds = ActionBounds(spec.action_space, device)
        self.encoders = member_encoders(spec, net, len(hps))
        self.updates = 0

    def seed_member(self, k: int) -> None:
        """Before building member k's networks: its plain run's RNG state (no seeds: the current one)."""
        if self.seeds is not None:
            torch.manual_seed(self.seeds[k])

    def build_networks(self, net: NetworkConfig, n_critics: int, value_net: bool = False
                       ) -> tuple[MemberTanhGaussianActor, MemberQEnsemble, MemberValueNet | None]:
        """The members' actor, Q ensemble of ``n_critics`` and (``value_net``) V net, stacked; member k's built
        as its plain run builds them: seeded, the same RNG draws in the same order (actor, critics, V)."""
        enc, dim = self.encoders, self.bounds.dim
        actors, critics, values = [], [], []
        for i in range(len(self.hps)):
            self.seed_member(i)
            actors.append(TanhGaussianActor(enc.features, dim, net.hidden_sizes, net.activation, encoder=enc()))
            critics.append(QEnsemble(enc.features, dim, net.hidden_sizes, net.activation, n=n_critics, encoder=enc()))
            if value_net:
                values.append(ValueNet(enc.features, net.hidden_sizes, net.activation, encoder=enc()))
        value = MemberValueNet(values).to(self.device) if value_net else None
        return MemberTanhGaussianActor(actors).to(self.device), MemberQEnsemble(critics).to(self.device), value

    def active_mask(self) -> Tensor | None:
        """The members an update steps: None for all (the common case: no masking ops)."""
        active = self.members.active
        return None if bool(active.all()) else active

    # -- acting (the loop's env batch [K*N, *obs] <-> the members' [K, N, *obs]) ---------------------
    @torch.inference_mode()
    def explore(self, obs: Tensor) -> Tensor:
        return self.bounds.to_env(self.members.join(self.actor.sample(self.members.split(obs), self.random)[0], obs))

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        x = self.members.split(obs)
        # a stochastic evaluation draws from torch's RNG: the members' streams are their training's
        a = self.actor.mode(x) if deterministic else self.actor.sample(x)[0]
        return self.bounds.to_env(self.members.join(a, obs))

    @torch.inference_mode()
    def act_member(self, k: int, obs: Tensor, deterministic: bool = True) -> Tensor:
        """Member k's action for ``obs`` ``[B, *obs]`` (its evaluation): every member acts on it, row k is kept."""
        x = obs.expand(self.members.k, *obs.shape)
        a = self.actor.mode(x) if deterministic else self.actor.sample(x)[0]
        return self.bounds.to_env(a[k])


# --- populations (issue 12): the pieces above with a member dimension ----------------------------

class PopulationAgent(Persistent):
    """Acting, member layout and persistence of an on-policy actor-critic population of K members (PPO,
    A2C, REINFORCE, batch/online actor-critic, TRPO); a plain run is K=1, the same code. Subclasses stack
    the parameters they train into ``[K, P]`` buffers with a stacked ``optimizer`` and add ``update``.

    - ``model``: K :class:`ActorCritic` s stacked (:func:`stack_actor_critics`), member k initialized as
      its plain run would be (``torch.manual_seed(seeds[k])`` first; no seeds: the current RNG state);
      ``critic=False``: no V network (REINFORCE without a baseline), ``share_encoder=False``: each head its
      own encoder (an algorithm that fits the critic alone);
    - the loop's env batch is member-major (envs ``k*N .. (k+1)*N - 1`` are member k's): acting splits
      it into ``[K, N, ...]`` and joins the outputs back (:class:`rlx.members.Members`); member k's
      actions come from its own random stream (``random``), so they do not depend on its neighbours;
    - hyperparameters every subclass shares are ``[K, 1]`` tensors: lr, gamma, anneal_lr.
    """

    optimizer: StackedOptimizer
    persist: tuple[str, ...] = ("model", "optimizer", "updates", "random")

    def __init__(self, spec: EnvSpec, hps: Sequence[Any], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None, *, critic: bool = True, share_encoder: bool = True,
                 n_steps: int | None = None):
        self.hp, self.hps, self.device = hps[0], list(hps), device
        self.n_steps: int = self.hp.n_steps if n_steps is None else n_steps
        self.members = m = Members(len(hps), device, spec.obs_shape, seeds)
        self.random = m.random  # member k's actions and shuffles from its own stream (its plain run's)
        models = []
        for k, h in enumerate(hps):
            if seeds is not None:
                torch.manual_seed(seeds[k])
            models.append(ActorCritic(spec, net, h.normalize_obs, h.log_std_init, critic=critic, share_encoder=share_encoder))
        self.model = stack_actor_critics(models).to(device)
        self.member_views: dict[int, ActorCritic] = {}  # act_member's one-member views, by member
        self.lr, self.gamma = m.hyper(hps, "lr"), m.hyper(hps, "gamma")
        self.anneal_lr = m.hyper(hps, "anneal_lr")
        # updates made; ``[K]`` (one count per member) where members may skip one (whole-episode batching)
        self.updates: int | Tensor = 0

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

    def annealed(self, lr: Tensor, progress: float) -> Tensor:
        """``[K, 1]`` learning rates ``lr`` linearly decayed to 0 over the run for the members with anneal_lr."""
        return torch.where(self.anneal_lr > 0, lr * (1.0 - progress), lr)


class PopulationActorCritic(PopulationAgent):
    """PPO and A2C: every member's parameters as ONE ``[K, P]`` buffer (``params``; one optimizer, one
    gradient clip over all of a member's parameters, as SB3's), the loss weighted by ``[K, 1]`` ent/vf
    coefficients and clipped to each member's max_grad_norm. Subclasses set ``optimizer`` (a stacked
    optimizer over ``params``) and ``update``."""

    def __init__(self, spec: EnvSpec, hps: Sequence[Any], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None):
        super().__init__(spec, hps, net, device, seeds)
        m = self.members
        self.params = stack_parameters(list(self.model.parameters()), members=len(hps))
        self.ent_coef, self.vf_coef = m.hyper(hps, "ent_coef"), m.hyper(hps, "vf_coef")
        self.max_grad_norm = m.hyper(hps, "max_grad_norm")

    # -- learning ----------------------------------------------------------------------------------
    def anneal(self, progress: float) -> Tensor:
        """This update's ``[K, 1]`` learning rates (linearly decayed for members with anneal_lr), set."""
        lr = self.annealed(self.lr, progress)
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


class PopulationPolicyGradient(PopulationAgent):
    """REINFORCE and the batch/online actor-critics (a :class:`PolicyGradientConfig` each): the policy
    (with the shared encoder, if any) and the critic as two ``[K, P]`` buffers with an optimizer each, so
    each has its own ``[K, 1]`` learning rate (lr, critic_lr) and its own gradient clip at max_grad_norm
    (a large critic error does not shrink the policy's step), as the plain runs' two optimizer groups
    had. A loss that reaches only one of them (a critic fit, a policy-only step) steps only that one."""

    critic_optimizer: StackedOptimizer | None  # None: no critic (REINFORCE without a baseline)
    persist = (*PopulationAgent.persist, "critic_optimizer")

    def __init__(self, spec: EnvSpec, hps: Sequence[PolicyGradientConfig], net: NetworkConfig, device: torch.device,
                 seeds: Sequence[int] | None = None, *, critic: bool = True, share_encoder: bool = True,
                 n_steps: int | None = None):
        super().__init__(spec, hps, net, device, seeds, critic=critic, share_encoder=share_encoder, n_steps=n_steps)
        m, k, model = self.members, len(hps), self.model
        shared = list(model.encoder.parameters()) if model.encoder is not None else []  # a shared CNN: the policy's
        self.policy_params = stack_parameters(shared + list(model.policy.parameters()), members=k)
        critic_params = list(model.critic.parameters())  # none for a policy-only model

        def optimizer(params: nn.Parameter, lrs: list[float]) -> StackedOptimizer:  # make_optimizer's eps and alpha
            return make_stacked_optimizer(self.hp.optimizer, params, lr=lrs, eps=[ON_POLICY_ADAM_EPS] * k, alpha=[0.99] * k)

        self.optimizer = optimizer(self.policy_params, [h.lr for h in hps])
        self.critic_params = stack_parameters(critic_params, members=k) if critic_params else None
        self.critic_optimizer = optimizer(self.critic_params, [h.critic_lr for h in hps]) \
            if self.critic_params is not None else None
        self.critic_lr = m.hyper(hps, "critic_lr")
        self.ent_coef = m.hyper(hps, "ent_coef")
        self.max_grad_norm = m.hyper(hps, "max_grad_norm")

    def anneal(self, progress: float) -> Tensor:
        """This update's ``[K, 1]`` policy learning rates, set (the critic's decays alike); returned for the log."""
        lr = self.annealed(self.lr, progress)
        self.optimizer.set("lr", lr)
        if self.critic_optimizer is not None:
            self.critic_optimizer.set("lr", self.annealed(self.critic_lr, progress))
        return lr

    def gradient_step(self, loss: Tensor, active: Tensor | None = None) -> Tensor:
        """backward of the members' ``[K]`` losses -> per group (policy, critic) each member's gradient
        clipped to its max norm -> a step of each group the loss reached, for the ``active`` members
        (default: those still training). Returns the ``[K]`` norms over both groups before clipping."""
        active = self.members.active if active is None else active
        mask = None if bool(active.all()) else active
        groups = [(self.policy_params, self.optimizer)]
        if self.critic_params is not None and self.critic_optimizer is not None:
            groups.append((self.critic_params, self.critic_optimizer))
        for _, opt in groups:
            opt.zero_grad()
        loss.sum().backward()
        squares = torch.zeros_like(loss.detach())
        for params, opt in groups:
            gather_stacked_grads(params)
            if params.grad is None:  # the loss does not reach this group: it stays as it is (state included)
                continue
            squares = squares + clip_grad_norm_stacked_(params.grad, self.max_grad_norm[:, 0]) ** 2
            opt.step(mask)
        return squares.sqrt()

    def actor_critic_loss(self, obs: Tensor, actions: Tensor, weights: Tensor, value_targets: Tensor | None,
                          mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Member k's  L_k = -mean_k(log pi(a|s) w) + 1/2 mean_k((V(s) - G)^2) - ent_coef_k mean_k(H)  over
        its samples of ``[K, B, ...]`` inputs (``mask``: a padded batch's; None: all): the notes' policy
        gradient with a weight w (a reward-to-go or an advantage), critic regression (``value_targets``
        None: a policy-only loss, the critic untouched) and an entropy bonus. Returns the ``[K]`` losses
        and the detached ``[K, 3]`` (policy loss, value loss, entropy)."""
        entropy_grad = bool((self.ent_coef > 0).any())
        log_prob, entropy, values = self.model.evaluate_actions(obs, actions, entropy_grad=entropy_grad)
        policy_loss = -masked_mean(log_prob * weights.detach(), mask)  # reinforce_loss per member
        loss = policy_loss
        v_loss = torch.zeros_like(policy_loss)
        if value_targets is not None:
            v_loss = 0.5 * masked_mean((values - value_targets) ** 2, mask)  # value_loss per member
            loss = loss + v_loss
        entropy_mean = masked_mean(entropy, mask)
        if entropy_grad:
            loss = loss - self.ent_coef[:, 0] * entropy_mean
        return loss, torch.stack([policy_loss.detach(), v_loss.detach(), entropy_mean.detach()], 1)
