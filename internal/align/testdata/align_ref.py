#!/usr/bin/env python3
"""PyTorch reference for internal/align, written the way TRL's DPOTrainer and
LLaMA Factory's CustomDPOTrainer / PairwiseTrainer compute their losses.

Reads JSON on stdin:
  {"cases": [
     {"name": ..., "config": {"loss", "beta", "label_smoothing", "simpo_gamma", "ftx"},
      "pairs": [{"chosen": [sum, count], "rejected": [...], "ref_chosen": [...], "ref_rejected": [...]}]},
     {"name": ..., "reward": {"chosen": [...], "rejected": [...]}}
  ]}
and prints {"results": [...]}, one object per case, in float64. Gradients come
from torch.autograd with the policy log-prob sums (or reward scores) as leaf
tensors, and are of the batch's mean loss.
"""

import json
import sys

import torch
import torch.nn.functional as F

ORPO_LOGP_CEILING = -1e-7  # mirrors align.ORPOLogProbCeiling


def dpo_case(cfg, pairs):
    loss_type = cfg.get("loss") or "sigmoid"
    beta = cfg.get("beta") or 0.1
    label_smoothing = cfg.get("label_smoothing") or 0.0
    simpo_gamma = cfg.get("simpo_gamma") or 0.5
    ftx_gamma = cfg.get("ftx") or 0.0
    use_ref_model = loss_type in ("sigmoid", "ipo", "hinge")

    def col(key, i):
        return torch.tensor([float(p[key][i]) for p in pairs], dtype=torch.float64)

    chosen_sum = col("chosen", 0).requires_grad_(True)
    rejected_sum = col("rejected", 0).requires_grad_(True)
    chosen_len, rejected_len = col("chosen", 1), col("rejected", 1)

    # LLaMA Factory concatenated_forward: average for ipo/orpo/simpo.
    if loss_type in ("ipo", "orpo", "simpo"):
        policy_chosen_logps = chosen_sum / chosen_len
        policy_rejected_logps = rejected_sum / rejected_len
        policy_chosen_logps_avg = policy_chosen_logps
    else:
        policy_chosen_logps = chosen_sum
        policy_rejected_logps = rejected_sum
        policy_chosen_logps_avg = chosen_sum / chosen_len

    if use_ref_model:
        reference_chosen_logps = col("ref_chosen", 0)
        reference_rejected_logps = col("ref_rejected", 0)
        if loss_type == "ipo":
            reference_chosen_logps = reference_chosen_logps / col("ref_chosen", 1)
            reference_rejected_logps = reference_rejected_logps / col("ref_rejected", 1)
        # TRL dpo_loss
        pi_logratios = policy_chosen_logps - policy_rejected_logps
        ref_logratios = reference_chosen_logps - reference_rejected_logps
        logits = pi_logratios - ref_logratios
        if loss_type == "sigmoid":
            losses = (
                -F.logsigmoid(beta * logits) * (1 - label_smoothing)
                - F.logsigmoid(-beta * logits) * label_smoothing
            )
        elif loss_type == "hinge":
            losses = torch.relu(1 - beta * logits)
        else:  # ipo
            losses = (logits - 1 / (2 * beta)) ** 2
        chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
        rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    elif loss_type == "orpo":
        c = torch.clamp(policy_chosen_logps, max=ORPO_LOGP_CEILING)
        r = torch.clamp(policy_rejected_logps, max=ORPO_LOGP_CEILING)
        log_odds = (policy_chosen_logps - policy_rejected_logps) - (
            torch.log1p(-torch.exp(c)) - torch.log1p(-torch.exp(r))
        )
        sft_loss = -policy_chosen_logps
        odds_ratio_loss = -F.logsigmoid(log_odds)
        losses = sft_loss + beta * odds_ratio_loss
        chosen_rewards = beta * policy_chosen_logps.detach()
        rejected_rewards = beta * policy_rejected_logps.detach()
    elif loss_type == "simpo":
        pi_logratios = policy_chosen_logps - policy_rejected_logps
        gamma_logratios = simpo_gamma / beta
        logits = pi_logratios - gamma_logratios
        losses = -F.logsigmoid(beta * logits)
        chosen_rewards = beta * policy_chosen_logps.detach()
        rejected_rewards = beta * policy_rejected_logps.detach()
    else:
        raise ValueError("unknown loss " + loss_type)

    if ftx_gamma > 0:
        losses = losses + ftx_gamma * -policy_chosen_logps_avg

    loss = losses.mean()
    loss.backward()
    return {
        "losses": losses.detach().tolist(),
        "d_chosen": chosen_sum.grad.tolist(),
        "d_rejected": rejected_sum.grad.tolist(),
        "chosen_rewards": chosen_rewards.tolist(),
        "rejected_rewards": rejected_rewards.tolist(),
        "metrics": {
            "loss": loss.item(),
            "rewards_chosen": chosen_rewards.mean().item(),
            "rewards_rejected": rejected_rewards.mean().item(),
            "accuracy": (chosen_rewards > rejected_rewards).double().mean().item(),
            "margin": (chosen_rewards - rejected_rewards).mean().item(),
            "logps_chosen": policy_chosen_logps.detach().mean().item(),
            "logps_rejected": policy_rejected_logps.detach().mean().item(),
        },
    }


def reward_case(rw):
    chosen_scores = torch.tensor(rw["chosen"], dtype=torch.float64, requires_grad=True)
    rejected_scores = torch.tensor(rw["rejected"], dtype=torch.float64, requires_grad=True)
    # LLaMA Factory PairwiseTrainer.compute_loss and ComputeAccuracy
    loss = -F.logsigmoid(chosen_scores - rejected_scores).mean()
    loss.backward()
    return {
        "loss": loss.item(),
        "accuracy": (chosen_scores > rejected_scores).double().mean().item(),
        "d_chosen": chosen_scores.grad.tolist(),
        "d_rejected": rejected_scores.grad.tolist(),
    }


def main():
    torch.set_default_dtype(torch.float64)
    req = json.load(sys.stdin)
    results = []
    for case in req["cases"]:
        if "reward" in case:
            results.append(reward_case(case["reward"]))
        else:
            results.append(dpo_case(case.get("config", {}), case["pairs"]))
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
