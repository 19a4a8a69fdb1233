import torch

from rlx.objectives.returns import gae, reward_to_go, td_error

T = torch.tensor


def test_reward_to_go_hand_computed():
    # r = [1, 2, 3], gamma = 0.5: G2 = 3, G1 = 2 + 0.5*3 = 3.5, G0 = 1 + 0.5*3.5 = 2.75
    g = reward_to_go(T([1.0, 2.0, 3.0]), T([0.0, 0.0, 1.0]), 0.5)
    assert torch.allclose(g, T([2.75, 3.5, 3.0]))


def test_reward_to_go_restarts_at_episode_boundary_and_bootstraps_cut_episode():
    # episode A = steps 0-1 (ends at 1), episode B = step 2, cut by the rollout: bootstrap 10
    g = reward_to_go(T([1.0, 1.0, 1.0]), T([0.0, 1.0, 0.0]), 0.9, bootstrap=T(10.0))
    assert torch.allclose(g, T([1.9, 1.0, 1.0 + 0.9 * 10.0]))


def test_reward_to_go_vectorized_matches_per_env():
    r = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    d = torch.zeros(4, 3)
    d[1, 0] = 1
    g = reward_to_go(r, d, 0.7)
    for i in range(3):
        assert torch.allclose(g[:, i], reward_to_go(r[:, i], d[:, i], 0.7))


def test_td_error_zero_value_after_termination():
    # r + gamma * (1 - term) * V' - V
    assert torch.allclose(td_error(T([1.0, 1.0]), T([0.5, 0.5]), T([2.0, 2.0]), T([0.0, 1.0]), 0.9), T([2.3, 0.5]))


def _episode():
    rewards = T([1.0, 0.0, 2.0, 1.0])
    values = T([0.5, 1.0, 1.5, 0.2])
    next_values = T([1.0, 1.5, 0.2, 0.7])  # last: bootstrap V(s_4)
    terminated = T([0.0, 0.0, 0.0, 0.0])
    done = T([0.0, 0.0, 0.0, 0.0])
    return rewards, values, next_values, terminated, done


def test_gae_lambda_zero_is_one_step_td_error():
    r, v, nv, term, done = _episode()
    assert torch.allclose(gae(r, v, nv, term, done, 0.9, 0.0), td_error(r, v, nv, term, 0.9))


def test_gae_lambda_one_is_discounted_return_minus_value():
    r, v, nv, term, done = _episode()
    g = 0.9
    # Monte-Carlo return bootstrapped with V(s_4) = 0.7
    returns = T([1 + g * 0 + g**2 * 2 + g**3 * 1 + g**4 * 0.7, 0 + g * 2 + g**2 * 1 + g**3 * 0.7, 2 + g * 1 + g**2 * 0.7, 1 + g * 0.7])
    assert torch.allclose(gae(r, v, nv, term, done, g, 1.0), returns - v, atol=1e-6)


def test_gae_hand_computed_with_lambda_half():
    # deltas: d1 = 1 + 0.5*2 - 1 = 1 ; d0 = 0 + 0.5*1 - 0 = 0.5 ; A1 = 1 ; A0 = 0.5 + 0.5*0.5*1 = 0.75
    a = gae(T([0.0, 1.0]), T([0.0, 1.0]), T([1.0, 2.0]), T([0.0, 0.0]), T([0.0, 0.0]), 0.5, 0.5)
    assert torch.allclose(a, T([0.75, 1.0]))


def test_gae_termination_vs_truncation():
    # One step that ends the episode, V(s') = 10 for the state reached.
    args = (T([1.0]), T([0.0]), T([10.0]))
    terminated = gae(*args, T([1.0]), T([1.0]), 0.9, 0.95)
    truncated = gae(*args, T([0.0]), T([1.0]), 0.9, 0.95)
    assert torch.allclose(terminated, T([1.0]))  # no bootstrap past a true terminal state
    assert torch.allclose(truncated, T([10.0]))  # time limit: bootstrap 1 + 0.9*10


def test_gae_does_not_leak_across_episodes():
    # step 0 ends an episode; its advantage must not include step 1's delta
    a = gae(T([1.0, 5.0]), T([0.0, 0.0]), T([0.0, 0.0]), T([1.0, 0.0]), T([1.0, 0.0]), 0.9, 0.9)
    assert torch.allclose(a, T([1.0, 5.0]))
