"""`rlx demo advantage`: the notes' penalty shootout, computed by rlx's own critic and actor-critic code.

1. Sample kicks from the uniform kicker policy (pi = 0.5 / 0.5), fit rlx's state-value critic
   (:class:`rlx.networks.heads.ValueNet`) and an action-value critic (:class:`rlx.networks.off_policy.DiscreteQEnsemble`,
   one member) to the returns with :func:`rlx.objectives.policy.value_loss`, and read off
   V(s), Q(s, left), Q(s, right) and A(s, a) = Q(s, a) - V(s) beside the notes' 0.5, 1, 0, +0.5, -0.5.
2. Train rlx's A2C on the env (its own ``update`` on one-kick rollouts) and record pi(left | s) and V(s)
   after every update: the policy moves to "left", V(s) follows it to 1.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from rlx.demos.envs import LEFT, RIGHT, PenaltyShootout

# the notes' numbers for the uniform kicker against a goalie who always jumps right
NOTES = {"V": 0.5, "Q_left": 1.0, "Q_right": 0.0, "A_left": 0.5, "A_right": -0.5}


@dataclass
class CriticFit:
    V: float
    Q_left: float
    Q_right: float
    A_left: float
    A_right: float
    kicks: int
    empirical_left_rate: float

    def values(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in NOTES}


def sample_uniform_kicks(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(obs [n, 1], actions [n], returns [n]) of ``n`` one-kick episodes of the uniform policy."""
    env = PenaltyShootout()
    obs0, _ = env.reset(seed=int(rng.integers(2**31)))
    actions = rng.integers(0, 2, size=n)
    returns = np.array([env.step(a)[1] for a in actions], dtype=np.float32)  # one step: return = reward
    return np.repeat(obs0[None], n, 0), actions, returns


def fit_critics(seed: int = 0, kicks: int = 4000, steps: int = 100, lr: float = 3e-3) -> CriticFit:
    """Fit V(s) and Q(s, .) of the uniform kicker by regression on sampled returns (rlx's networks and loss)."""
    from rlx.algos.common import make_optimizer
    from rlx.networks.flat import gather_flat_grads
    from rlx.networks.heads import ValueNet
    from rlx.networks.off_policy import DiscreteQEnsemble
    from rlx.objectives.policy import value_loss

    torch.manual_seed(seed)
    obs, actions, returns = sample_uniform_kicks(kicks, np.random.default_rng(seed))
    x, a, g = torch.as_tensor(obs), torch.as_tensor(actions), torch.as_tensor(returns)
    v_net = ValueNet(1, [64, 64], "tanh")
    q_net = DiscreteQEnsemble(1, 2, [64, 64], "tanh", n=1)
    opt = make_optimizer(list(v_net.parameters()) + list(q_net.parameters()), lr)
    for _ in range(steps):  # full-batch regression: V(s) -> E[G], Q(s, a) -> E[G | a]
        q_taken = q_net(x)[0].gather(-1, a.unsqueeze(-1)).squeeze(-1)
        loss = value_loss(v_net(x), g) + value_loss(q_taken, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gather_flat_grads(opt)
        opt.step()
    with torch.no_grad():
        v = v_net(x[:1]).item()
        q = q_net(x[:1])[0, 0]
    q_left, q_right = q[LEFT].item(), q[RIGHT].item()
    return CriticFit(V=v, Q_left=q_left, Q_right=q_right, A_left=q_left - v, A_right=q_right - v, kicks=kicks,
                     empirical_left_rate=float((actions == LEFT).mean()))


def train_actor_critic(seed: int = 0, updates: int = 150, n_envs: int = 16, lr: float = 3e-3) -> dict[str, list[float]]:
    """rlx's A2C (its own ``update``: GAE(1) advantage, policy-gradient + value loss) on one-kick
    rollouts of ``n_envs`` kicks; pi(left|s) and V(s) before the first and after every update."""
    from rlx.algos.a2c import A2C
    from rlx.buffers.rollout import Rollout
    from rlx.config.schema import NetworkConfig
    from rlx.envs.make import EnvSpec
    from rlx.networks.heads import CategoricalPolicy

    torch.manual_seed(seed)
    env = PenaltyShootout()
    spec = EnvSpec("rlx/PenaltyShootout-v0", cast(gym.spaces.Box, env.observation_space), env.action_space)
    algo = A2C(spec, A2C.Config(lr=lr, n_steps=1), NetworkConfig(hidden_sizes=[64, 64]), torch.device("cpu"))
    obs0 = torch.as_tensor(env.reset(seed=seed)[0]).unsqueeze(0)
    obs = obs0.expand(n_envs, -1)
    history: dict[str, list[float]] = {"pi_left": [], "V": [], "mean_reward": []}

    policy = cast(CategoricalPolicy, algo.model.policy)  # two discrete actions

    def record() -> None:
        with torch.no_grad():
            # A2C's model has a member dimension (a population of one): [1, 1, obs] in, [1, 1, actions] out
            history["pi_left"].append(policy.distribution(algo.model.features(obs0.unsqueeze(0))).probs[0, 0, LEFT].item())
            history["V"].append(algo.value(obs0).item())

    record()
    for i in range(updates):
        actions, log_probs, values = algo.explore(obs)
        rewards = torch.tensor([env.step(int(a))[1] for a in actions], dtype=torch.float32)
        ones = torch.ones(1, n_envs)
        rollout = Rollout(obs=obs.unsqueeze(0).clone(), actions=actions.unsqueeze(0).clone(), log_probs=log_probs.unsqueeze(0).clone(),
                          values=values.unsqueeze(0).clone(), rewards=rewards.unsqueeze(0), terminated=ones, done=ones,
                          next_values=torch.zeros(1, n_envs))
        algo.update(rollout, i / updates)
        history["mean_reward"].append(rewards.mean().item())
        record()
    return history


def plot(fit: CriticFit, history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    keys = list(NOTES)
    xs = np.arange(len(keys))
    ax1.bar(xs - 0.2, [NOTES[k] for k in keys], 0.4, label="notes")
    ax1.bar(xs + 0.2, [getattr(fit, k) for k in keys], 0.4, label="rlx critic (uniform kicker)")
    ax1.set_xticks(xs, ["V(s)", "Q(s,left)", "Q(s,right)", "A(s,left)", "A(s,right)"])
    ax1.axhline(0, color="black", lw=0.5)
    ax1.set_title("Penalty shootout: values of the uniform policy")
    ax1.legend()
    ax2.plot(history["pi_left"], label="pi(left | s)")
    ax2.plot(history["V"], label="V(s)")
    ax2.set_xlabel("A2C update")
    ax2.set_ylim(-0.05, 1.05)
    ax2.set_title("Actor-critic training: the kicker learns to shoot left")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(out_dir: Path, seed: int = 0, kicks: int = 4000, updates: int = 150) -> dict[str, Any]:
    """Both parts; writes ``advantage.png`` and ``result.json`` into ``out_dir`` and returns the result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fit = fit_critics(seed, kicks)
    history = train_actor_critic(seed, updates)
    result = {**fit.values(), "notes": NOTES, "kicks": fit.kicks, "empirical_left_rate": fit.empirical_left_rate,
              "pi_left_start": history["pi_left"][0], "pi_left_end": history["pi_left"][-1],
              "V_end": history["V"][-1], "updates": updates, "seed": seed, "run_dir": str(out_dir)}
    plot(fit, history, out_dir / "advantage.png")
    (out_dir / "result.json").write_text(json.dumps({**result, "history": history}, indent=2) + "\n")
    return result


def table(result: dict[str, Any]) -> str:
    """The learned values beside the notes' (plain text)."""
    names = {"V": "V(s)", "Q_left": "Q(s, left)", "Q_right": "Q(s, right)", "A_left": "A(s, left)", "A_right": "A(s, right)"}
    lines = [f"{'':12} {'notes':>7} {'rlx':>8}"]
    lines += [f"{names[k]:12} {NOTES[k]:>+7.2f} {result[k]:>+8.3f}" for k in NOTES]
    return "\n".join(lines)
