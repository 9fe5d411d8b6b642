#!/usr/bin/env python3
"""PyTorch side of BenchmarkTrainStep: tokens/s of one float32 training step
(forward, loss, backward, torch.optim.AdamW) of the same shapes, using
llama_ref.py's model code, so `make bench-llama` can print lathe's figure
next to PyTorch's on the same machine.

    /usr/bin/python3 internal/llama/testdata/train_bench.py [--threads N] [--steps 3]
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402

CASES = [  # name, config, batch, seq: the same as BenchmarkTrainStep
    ("tiny", dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=160, vocab_size=512), 8, 128),
    ("stories15M", dict(hidden_size=288, num_hidden_layers=6, num_attention_heads=6, intermediate_size=768, vocab_size=32000), 8, 256),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for name, d, B, T in CASES:
        d = dict(d, model_type="llama", rms_norm_eps=1e-5)
        cfg = R.Config(d)
        g = torch.Generator().manual_seed(0)
        params = R.random_params(cfg, g, torch.float32)
        for p in params.values():
            p.requires_grad_(True)
        opt = torch.optim.AdamW(list(params.values()), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, foreach=False)
        ids = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
        targets = torch.roll(ids, -1, 1)

        def step():
            opt.zero_grad()
            loss, _ = R.causal_lm_loss(R.forward(cfg, params, ids), targets)
            loss.backward()
            opt.step()

        step()  # warm-up: optimizer state
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        dt = (time.perf_counter() - t0) / a.steps
        print(f"TrainStep/{name} torch {torch.__version__} threads {a.threads}: {dt * 1e3:.0f} ms/step, {B * T / dt:.0f} tokens/s")


if __name__ == "__main__":
    main()
