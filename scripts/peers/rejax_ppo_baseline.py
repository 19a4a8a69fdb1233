# ruff: noqa  (from ../shared/peer/ as the issue measured it; an optional 3rd argument `once` skips the compiled second call)
"""rejax PPO CartPole-v1 (gymnax), RL-Zoo's CartPole preset sizes: single run and a vmapped population.
Usage: python rejax_ppo_baseline.py K STEPS [once]   -> prints JSON with compile+run wall, run-only wall, final eval returns."""
import json, sys, time, os
import jax, jax.numpy as jnp
from rejax import PPO

K, steps = int(sys.argv[1]), int(sys.argv[2])
cfg = dict(env="CartPole-v1", num_envs=8, num_steps=32, num_minibatches=1, num_epochs=20, gamma=0.98,
           gae_lambda=0.8, ent_coef=0.0, learning_rate=0.001, clip_eps=0.2, max_grad_norm=0.5,
           total_timesteps=steps, eval_freq=steps, skip_initial_evaluation=True,
           agent_kwargs=dict(activation="tanh", hidden_layer_sizes=(64, 64)))
clips = [0.1, 0.2, 0.25, 0.3]
if K == 1:
    algo = PPO.create(**cfg)
    train = jax.jit(PPO.train)
    keys = jax.random.PRNGKey(0)
    args = (algo, keys)
else:
    base = PPO.create(**cfg)
    clip = jnp.array([clips[i % len(clips)] for i in range(K)])
    train = jax.jit(jax.vmap(lambda c, k: PPO.train(base.replace(clip_eps=c), k)))
    keys = jax.random.split(jax.random.PRNGKey(0), K)
    args = (clip, keys)
t0 = time.perf_counter()
ts, ev = train(*args); jax.block_until_ready(ev)
t1 = time.perf_counter()
if sys.argv[3:] != ["once"]:
    ts, ev = train(*args); jax.block_until_ready(ev)   # second call: compiled, same work
t2 = time.perf_counter()
lengths, returns = ev
r = jnp.asarray(returns)
final = r[..., -1, :].mean(-1) if K > 1 else r[-1].mean()
print(json.dumps({"K": K, "steps": steps, "first_call_s": round(t1 - t0, 2), "compiled_call_s": round(t2 - t1, 2) if sys.argv[3:] != ["once"] else None,
                  "final_eval_mean": [round(float(x), 1) for x in jnp.atleast_1d(final)]}))
