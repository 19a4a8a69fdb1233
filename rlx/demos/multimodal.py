"""`rlx demo multimodal`: the notes' two-passage robot, whose Q(s, .) has two peaks.

DDPG, SAC (tanh-Gaussian) and discrete SAC are trained by rlx's own training path (`rlx train` with
``env=two_passages`` / ``env=two_passages_discrete``), rebuilt from their last checkpoint, and read out at
the start state: the learned Q(s, .), the Boltzmann target exp(Q(s, .)/alpha)/Z the notes describe (the
policy SAC's loss pulls toward), the learned policy (SAC's density, discrete SAC's probabilities, DDPG's
single point) and the share of evaluation episodes that went through each passage.

What to expect (and what the demo shows rather than assumes): DDPG's deterministic policy is one point,
so it commits to one passage. SAC's policy loss is a reverse KL from a unimodal (tanh-)Gaussian to the
Boltzmann target, which is mode-seeking: it may still sit on one peak. A categorical policy (discrete
SAC) can match the target's two peaks and keeps probability on both passages.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from rlx.demos.envs import TwoPassages, TwoPassagesDiscrete, passage, two_passages_reward

# demo name -> (algo, env config)
SETUPS = {"ddpg": ("ddpg", "two_passages"), "sac": ("sac", "two_passages"), "sac_discrete": ("sac_discrete", "two_passages_discrete")}
GRID = 201  # headings at which the continuous Q and densities are read out


def train_agent(name: str, run_dir: Path, seed: int, steps: int, alpha: float) -> Any:
    """Train one algorithm through :func:`rlx.train.run.train` and rebuild it from ``checkpoints/last.pt``."""
    from rlx.algos.registry import ALGOS
    from rlx.config.compose import compose_config
    from rlx.envs.make import EnvSpec
    from rlx.rundir.checkpoint import load_checkpoint
    from rlx.train.driver import train
    from rlx.train.run import parse_settings

    algo, env = SETUPS[name]
    overrides = [f"algo={algo}", f"env={env}", f"seed={seed}", f"total_steps={steps}", "network.hidden_sizes=[64,64]",
                 "network.activation=relu", "algo.learning_starts=200", "algo.batch_size=64", "algo.lr=1e-3",
                 "eval.every=0", "eval.episodes=1", "checkpoint.every=0", "logger.progress=false",
                 "logger.wandb.mode=disabled"]
    if algo != "ddpg":
        overrides.append(f"algo.alpha={alpha}")  # the demo's fixed temperature: the target below uses the same
    train(compose_config(overrides), run_dir)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", map_location="cpu")
    s = parse_settings(state["config"])
    proto = TwoPassagesDiscrete(**s.env.kwargs) if name == "sac_discrete" else TwoPassages()
    spec = EnvSpec(s.env.id, cast(gym.spaces.Box, proto.observation_space), proto.action_space)
    agent = ALGOS[s.algo_name](spec, s.algo, s.network, torch.device("cpu"))
    agent.load_state_dict(state["algo"])
    return agent, proto


def boltzmann(q: np.ndarray, alpha: float) -> np.ndarray:
    """exp(Q/alpha) / Z over the given action points (probabilities summing to 1)."""
    z = (q - q.max()) / alpha
    p = np.exp(z)
    return p / p.sum()


def passage_mass(headings: np.ndarray, probs: np.ndarray) -> list[float]:
    """[mass on a < 0 (left), mass on a >= 0 (right)] of probabilities over headings."""
    side = passage(headings)
    return [float(probs[side == 0].sum()), float(probs[side == 1].sum())]


def analyse(name: str, agent: Any, proto: TwoPassages, alpha: float, episodes: int, seed: int) -> dict[str, Any]:
    """Q(s, .), the Boltzmann target, the policy and the passage shares of one trained agent."""
    obs = torch.ones(1, 1)
    with torch.no_grad():
        if name == "sac_discrete":
            assert isinstance(proto, TwoPassagesDiscrete)  # built for sac_discrete by train_agent
            headings = proto.headings
            # a population of one: [1, B, ...] in, [1, E, B, A] critics and [1, B, A] logits out
            q = agent.critic(obs[None])[0, :, 0, :].min(0).values.numpy()  # the policy loss's min over the twin critics
            policy = torch.softmax(agent.actor(obs[None])[0], -1)[0].numpy()
            point = None
        else:
            headings = np.linspace(-1, 1, GRID)
            a = torch.as_tensor(headings, dtype=torch.float32).unsqueeze(-1)
            # a population of one: [1, B, ...] in, [1, E, B] out (SAC's twin critics, DDPG's one)
            q_all = agent.critic(obs.expand(GRID, -1)[None], a[None])[0]
            q = (q_all.min(0).values if name == "sac" else q_all[0]).numpy()
            if name == "sac":
                from rlx.objectives.distributions import tanh_gaussian_log_prob

                mean, log_std = (t[0] for t in agent.actor(obs[None]))
                u = torch.atanh(a.clamp(-0.999, 0.999))
                density = tanh_gaussian_log_prob(mean.expand(GRID, -1), log_std.expand(GRID, -1), u).exp().numpy()
                policy = density * (headings[1] - headings[0])  # probability per grid cell
                point = None
            else:
                policy = None
                point = float(agent.act(obs)[0, 0])
    target = boltzmann(q, alpha)
    # evaluation episodes: the stochastic policy for SAC and discrete SAC, DDPG's deterministic one
    torch.manual_seed(seed)
    env = TwoPassagesDiscrete(len(headings)) if name == "sac_discrete" else TwoPassages()  # headings: proto's
    env.reset(seed=seed)
    with torch.no_grad():
        if name == "ddpg":
            actions = agent.act(obs.expand(episodes, -1)).numpy()
        else:
            actions = agent.explore(obs.expand(episodes, -1)).numpy()
    counts = np.zeros(2)
    for a in actions:
        counts[env.step(a)[4]["passage"]] += 1
    result = {"passage_share": (counts / episodes).tolist(), "boltzmann_share": passage_mass(headings, target),
              "q_peak_heading": float(headings[int(np.argmax(q))]), "headings": headings.tolist(), "q": q.tolist(),
              "boltzmann_target": target.tolist()}
    if policy is not None:
        result["policy"] = policy.tolist()
        result["policy_mass_share"] = passage_mass(headings, policy / policy.sum())
    if point is not None:
        result["point"] = point
    return result


def plot(results: dict[str, dict[str, Any]], alpha: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    true_a = np.linspace(-1, 1, GRID)
    for ax, (name, r) in zip(axes[0], results.items(), strict=True):
        h = np.asarray(r["headings"])
        width = h[1] - h[0]
        ax.plot(true_a, two_passages_reward(true_a), color="grey", lw=1, ls="--", label="true Q = r(a)")
        ax.plot(h, r["q"], color="black", label="learned Q(s, a)")
        ax.set_xlabel("heading a (a < 0: left passage)")
        ax.set_ylabel("Q")
        ax2 = ax.twinx()
        ax2.plot(h, np.asarray(r["boltzmann_target"]) / width, color="tab:green", label=f"exp(Q/α)/Z, α={alpha}")
        ax2.fill_between(h, 0, np.asarray(r["boltzmann_target"]) / width, color="tab:green", alpha=0.2)
        if "policy" in r:
            ax2.plot(h, np.asarray(r["policy"]) / width, color="tab:red", label="policy π(a|s)")
        if "point" in r:
            ax.axvline(r["point"], color="tab:red", label=f"DDPG μ(s) = {r['point']:.2f}")
        ax2.set_ylabel("density")
        share = r["passage_share"]
        ax.set_title(f"{name}: episodes left {share[0]:.0%} / right {share[1]:.0%}")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(out_dir: Path, seed: int = 0, steps: int = 1500, alpha: float = 0.2, episodes: int = 1000,
        algos: tuple[str, ...] = tuple(SETUPS)) -> dict[str, Any]:
    """Train and analyse each algorithm; writes ``multimodal.png`` and ``result.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in algos:
        agent, proto = train_agent(name, out_dir / name, seed, steps, alpha)
        results[name] = analyse(name, agent, proto, alpha, episodes, seed)
    plot(results, alpha, out_dir / "multimodal.png")
    full = {"alpha": alpha, "seed": seed, "steps": steps, "episodes": episodes, "run_dir": str(out_dir), "algorithms": results}
    (out_dir / "result.json").write_text(json.dumps(full, indent=2) + "\n")
    return full


def summary(full: dict[str, Any]) -> dict[str, Any]:
    """The result without the per-heading curves (what `--json` prints)."""
    keep = ("passage_share", "boltzmann_share", "policy_mass_share", "q_peak_heading", "point")
    return {**{k: v for k, v in full.items() if k != "algorithms"},
            "algorithms": {n: {k: r[k] for k in keep if k in r} for n, r in full["algorithms"].items()}}


def table(full: dict[str, Any]) -> str:
    lines = [f"alpha = {full['alpha']} (SAC, discrete SAC and the Boltzmann target), {full['episodes']} evaluation episodes",
             f"{'algorithm':13} {'Q peak at':>9} {'target left/right':>18} {'episodes left/right':>20}"]
    for name, r in full["algorithms"].items():
        t, s = r["boltzmann_share"], r["passage_share"]
        lines.append(f"{name:13} {r['q_peak_heading']:>+9.2f} {t[0]:>9.0%} /{t[1]:>5.0%} {s[0]:>11.0%} /{s[1]:>5.0%}")
    return "\n".join(lines)
