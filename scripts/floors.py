"""Compute floors for scripts/bench.py: env stepping alone, and bare gradient updates.

The bare updates are deliberately written as plain torch, independent of rlx's code: the same network
shapes, losses, optimizers and batch sizes as the benchmarked configuration, in a tight loop.
"""
from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

torch.set_num_threads(1)


def mlp(i: int, o: int, hidden: tuple[int, ...], act=nn.Tanh) -> nn.Sequential:
    layers, d = [], i
    for h in hidden:
        layers += [nn.Linear(d, h), act()]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, o))


def env_rate(env_id: str, num_envs: int, steps: int) -> float:
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.reset(seed=0)
    envs.action_space.seed(0)
    n = max(1, steps // num_envs)
    actions = [envs.action_space.sample() for _ in range(min(n, 1000))]
    t = time.perf_counter()
    for i in range(n):
        envs.step(actions[i % len(actions)])
    return n * num_envs / (time.perf_counter() - t)


def _timed(step, n: int) -> float:
    for _ in range(min(20, n)):
        step()  # warm-up
    t = time.perf_counter()
    for _ in range(n):
        step()
    return n / (time.perf_counter() - t)


def onpolicy_rate(obs_dim: int, n_act: int, batch: int, n: int, optimizer: str) -> float:
    actor, critic = mlp(obs_dim, n_act, (64, 64)), mlp(obs_dim, 1, (64, 64))
    params = [*actor.parameters(), *critic.parameters()]
    opt = torch.optim.Adam(params, 1e-3) if optimizer == "adam" else torch.optim.RMSprop(params, 7e-4, alpha=0.99, eps=1e-5)
    obs, acts = torch.randn(batch, obs_dim), torch.randint(0, n_act, (batch,))
    old_logp, adv, ret = torch.full((batch,), -0.69), torch.randn(batch), torch.randn(batch)

    def step():
        dist = Categorical(logits=actor(obs))
        logp, ent = dist.log_prob(acts), dist.entropy().mean()
        ratio = torch.exp(logp - old_logp)
        a = (adv - adv.mean()) / (adv.std() + 1e-8)
        pl = -torch.min(ratio * a, ratio.clamp(0.8, 1.2) * a).mean() if optimizer == "adam" else -(logp * adv).mean()
        loss = pl + 0.5 * ((critic(obs).squeeze(-1) - ret) ** 2).mean() - 0.0 * ent
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()

    return _timed(step, n)


def offpolicy_rate(kind: str, obs_dim: int, act_dim: int, n: int) -> float:
    hidden = (256, 256) if kind == "sac" else (400, 300)
    batch = 256
    o, a, r, o2, d = (torch.randn(batch, obs_dim), torch.rand(batch, act_dim) * 2 - 1, torch.randn(batch, 1),
                      torch.randn(batch, obs_dim), torch.zeros(batch, 1))
    n_q = 1 if kind == "ddpg" else 2
    qs = [mlp(obs_dim + act_dim, 1, hidden, nn.ReLU) for _ in range(n_q)]
    qs_t = [mlp(obs_dim + act_dim, 1, hidden, nn.ReLU) for _ in range(n_q)]
    actor = mlp(obs_dim, 2 * act_dim if kind == "sac" else act_dim, hidden, nn.ReLU)
    actor_t = mlp(obs_dim, act_dim, hidden, nn.ReLU)
    q_params = [p for q in qs for p in q.parameters()]
    q_opt, a_opt = torch.optim.Adam(q_params, 1e-3), torch.optim.Adam(actor.parameters(), 1e-3)
    log_alpha = torch.zeros(1, requires_grad=True)
    alpha_opt = torch.optim.Adam([log_alpha], 1e-3)
    targets = [p for q in qs_t for p in q.parameters()] + ([] if kind == "sac" else list(actor_t.parameters()))
    sources = q_params + ([] if kind == "sac" else list(actor.parameters()))
    count = [0]

    def sample(obs):
        mean, log_std = actor(obs).chunk(2, -1)
        std = log_std.clamp(-20, 2).exp()
        u = mean + std * torch.randn_like(mean)
        act = torch.tanh(u)
        logp = (Normal(mean, std).log_prob(u) - torch.log(1 - act.pow(2) + 1e-6)).sum(-1, keepdim=True)
        return act, logp

    def step():
        count[0] += 1
        with torch.no_grad():
            if kind == "sac":
                a2, logp2 = sample(o2)
                q2 = torch.min(*[q(torch.cat([o2, a2], -1)) for q in qs_t]) - log_alpha.exp() * logp2
            else:
                a2 = torch.tanh(actor_t(o2))
                if kind == "td3":
                    a2 = (a2 + (0.2 * torch.randn_like(a2)).clamp(-0.5, 0.5)).clamp(-1, 1)
                q2 = torch.min(*[q(torch.cat([o2, a2], -1)) for q in qs_t]) if n_q == 2 else qs_t[0](torch.cat([o2, a2], -1))
            y = r + 0.99 * (1 - d) * q2
        q_loss = sum(((q(torch.cat([o, a], -1)) - y) ** 2).mean() for q in qs)
        q_opt.zero_grad()
        q_loss.backward()
        q_opt.step()
        if kind == "td3" and count[0] % 2:
            return
        if kind == "sac":
            pa, logp = sample(o)
            qpi = torch.min(*[q(torch.cat([o, pa], -1)) for q in qs])
            a_loss = (log_alpha.exp().detach() * logp - qpi).mean()
        else:
            a_loss = -qs[0](torch.cat([o, torch.tanh(actor(o))], -1)).mean()
        a_opt.zero_grad()
        a_loss.backward()
        a_opt.step()
        if kind == "sac":
            al = -(log_alpha * (logp.detach() - act_dim)).mean()
            alpha_opt.zero_grad()
            al.backward()
            alpha_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(targets, sources, 0.005)

    return _timed(step, n)


def measure(kind: str, env_id: str, num_envs: int, steps: int, updates: int) -> dict:
    env = gym.make(env_id)
    obs_dim = int(np.prod(env.observation_space.shape))
    env_sps = env_rate(env_id, num_envs, min(steps, 50_000))
    n = max(50, min(updates, 3000))  # a sample of updates is enough for a rate
    if kind == "ppo":
        ups = onpolicy_rate(obs_dim, env.action_space.n, 256, n, "adam")
    elif kind == "a2c":
        ups = onpolicy_rate(obs_dim, env.action_space.n, 40, n, "rmsprop")
    else:
        ups = offpolicy_rate(kind, obs_dim, int(np.prod(env.action_space.shape)), min(n, 1000))
    floor_time = steps / env_sps + updates / ups
    return {"env_sps": env_sps, "updates_per_s": ups, "floor_sps": steps / floor_time}
