#!/usr/bin/python3
"""PyTorch reference for internal/ppo, written the way TRL's PPOTrainer
(trl/trainer/ppo_trainer.py, trl/core.py, v0.8-0.11) computes PPO for
language models: compute_rewards, compute_advantages, masked_whiten, the
clipped policy and value losses (gradients by autograd),
AdaptiveKLController and RunningMoments. Reads a JSON case on stdin, prints
JSON results. float64 throughout."""
import json
import sys

import torch

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


def compute_rewards(logp, ref, score, kl_coef, kl_penalty):
    d = logp - ref
    kl = {"kl": d, "abs": d.abs(), "mse": 0.5 * d.square()}[kl_penalty]
    rewards = -kl_coef * kl
    rewards = rewards.clone()
    rewards[-1] += score
    return rewards, kl


def compute_advantages(values, rewards, gamma, lam):
    lastgaelam = 0
    adv_rev = []
    n = rewards.shape[-1]
    for i in reversed(range(n)):
        nextvalues = values[i + 1] if i < n - 1 else 0.0
        delta = rewards[i] + gamma * nextvalues - values[i]
        lastgaelam = delta + gamma * lam * lastgaelam
        adv_rev.append(lastgaelam)
    adv = torch.stack(adv_rev[::-1])
    return adv, adv + values


def whiten(x):
    mean, var = torch.mean(x), torch.var(x)
    return (x - mean) * torch.rsqrt(var + 1e-8)


def policy_loss(logp, old, adv, cliprange):
    logp = logp.clone().requires_grad_(True)
    ratio = torch.exp(logp - old)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = torch.mean(torch.max(pg1, pg2))
    loss.backward()
    clipfrac = torch.mean(torch.gt(pg2, pg1).double())
    approxkl = 0.5 * torch.mean((logp.detach() - old) ** 2)
    return float(loss), logp.grad.tolist(), float(clipfrac), float(approxkl)


def value_loss(v, old, returns, cliprange_value):
    v = v.clone().requires_grad_(True)
    vclipped = torch.clamp(v, old - cliprange_value, old + cliprange_value)
    vf1 = (v - returns) ** 2
    vf2 = (vclipped - returns) ** 2
    loss = 0.5 * torch.mean(torch.max(vf1, vf2))
    loss.backward()
    return float(loss), v.grad.tolist(), float(torch.mean(torch.gt(vf2, vf1).double()))


class RunningMoments:
    def __init__(self):
        self.mean, self.std, self.var, self.count = 0.0, 1.0, 1.0, 1e-24

    def update(self, xs):
        xs_count = xs.numel()
        xs_var, xs_mean = torch.var_mean(xs, unbiased=False)
        xs_mean, xs_var = xs_mean.item(), xs_var.item()
        delta = xs_mean - self.mean
        tot_count = self.count + xs_count
        new_sum = xs_var * xs_count
        old_sum = self.var * self.count + delta ** 2 * self.count * xs_count / tot_count
        self.mean += delta * xs_count / tot_count
        self.var = (old_sum + new_sum) / tot_count
        self.std = (self.var * tot_count / (tot_count - 1)) ** 0.5
        self.count = tot_count
        return xs_mean, (xs_var * xs_count / (xs_count - 1)) ** 0.5


def main():
    c = json.load(sys.stdin)
    out = {}
    rewards, kl = compute_rewards(t(c["logp"]), t(c["ref"]), c["score"], c["kl_coef"], c["kl_penalty"])
    out["rewards"], out["kl"] = rewards.tolist(), kl.tolist()
    adv, ret = compute_advantages(t(c["values"]), rewards, c["gamma"], c["lam"])
    out["advantages"], out["returns"] = adv.tolist(), ret.tolist()
    out["whitened"] = whiten(t(c["batch_adv"])).tolist()
    out["pg"] = policy_loss(t(c["new_logp"]), t(c["logp"]), t(c["batch_adv"][: len(c["logp"])]), c["cliprange"])
    out["vf"] = value_loss(t(c["new_values"]), t(c["values"]), ret, c["cliprange_value"])
    value = c["kl_coef"]
    for cur, n in c["kl_updates"]:
        e = max(min(cur / c["kl_target"] - 1, 0.2), -0.2)
        value *= 1 + e * n / c["kl_horizon"]
    out["kl_value"] = value
    rm = RunningMoments()
    norms = []
    for batch in c["score_batches"]:
        rm.update(t(batch))
        s = (t(batch) - rm.mean) / (rm.std + 1e-8)
        if c["score_clip"] > 0:
            s = torch.clamp(s, -c["score_clip"], c["score_clip"])
        norms.append(s.tolist())
    out["score_norm"] = norms
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
