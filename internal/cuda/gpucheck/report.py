#!/usr/bin/env python3
"""Combines `lathe-cuda bench -json` and hf_bench.py output into the
gpu-check table: tokens/s of both sides, their ratio, and MFU of both
against the device's peak dense bf16 FLOP/s, with the same FLOPs per token
(lathe-cuda's accounting, see cmd/lathe-cuda/bench.go) for both. Prints
whether issue 14's goals are met: LoRA >= 1.5x transformers+PEFT tokens/s,
full fine-tuning >= 40% MFU.

usage: report.py LATHE.jsonl HF.jsonl
"""
import json
import sys


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows[r["method"]] = r
    return rows


def main():
    lathe, hf = load(sys.argv[1]), load(sys.argv[2])
    print(f"{'method':<10} {'lathe tok/s':>12} {'HF tok/s':>12} {'ratio':>7} {'lathe MFU':>10} {'HF MFU':>8}")
    goals = []
    for method in ("lora", "full"):
        l, h = lathe.get(method), hf.get(method)
        if not l or not h:
            print(f"{method:<10} missing: lathe={'yes' if l else 'no'} hf={'yes' if h else 'no'}")
            goals.append((method, None))
            continue
        peak, fpt = l["peak_flops"], l["flops_per_token"]
        lm = l["tokens_per_s"] * fpt / peak if peak else float("nan")
        hm = h["tokens_per_s"] * fpt / peak if peak else float("nan")
        ratio = l["tokens_per_s"] / h["tokens_per_s"]
        print(f"{method:<10} {l['tokens_per_s']:12.0f} {h['tokens_per_s']:12.0f} {ratio:6.2f}x {100*lm:9.1f}% {100*hm:7.1f}%")
        goals.append((method, ratio if method == "lora" else lm))
        # compute_type = "bf16" (bfloat16 weights), against the same HF run.
        b = lathe.get(method + "-bf16")
        if b:
            bm = b["tokens_per_s"] * fpt / peak if peak else float("nan")
            br = b["tokens_per_s"] / h["tokens_per_s"]
            print(f"{method + '-bf16':<10} {b['tokens_per_s']:12.0f} {h['tokens_per_s']:12.0f} {br:6.2f}x {100*bm:9.1f}% {100*hm:7.1f}%")
            prev = goals[-1][1]
            goals[-1] = (method, max(prev, br if method == "lora" else bm))
    print()
    for method, v in goals:
        if method == "lora":
            ok = v is not None and v >= 1.5
            print(f"goal LoRA >= 1.5x transformers+PEFT: {'MET' if ok else 'NOT MET'} ({'n/a' if v is None else f'{v:.2f}x'})")
        else:
            ok = v is not None and v >= 0.40
            print(f"goal full fine-tuning >= 40% MFU:   {'MET' if ok else 'NOT MET'} ({'n/a' if v is None else f'{100*v:.1f}%'})")
    if lathe:
        any_row = next(iter(lathe.values()))
        print(f"(peak {any_row['peak_flops']/1e12:.0f} TFLOP/s bf16 dense; FLOPs/token lora {lathe.get('lora', {}).get('flops_per_token', 0):.3g}, "
              f"full {lathe.get('full', {}).get('flops_per_token', 0):.3g}; lathe GEMM compute {any_row.get('gemm')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
