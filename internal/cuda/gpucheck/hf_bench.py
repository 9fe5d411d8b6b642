#!/usr/bin/env python3
"""The Hugging Face side of `make gpu-check`: LoRA SFT and full fine-tuning
steps of a Qwen2.5-0.5B-shaped model with random weights on one GPU, with
transformers + PEFT, timed like `lathe-cuda bench`.

Both sides train the same shape (cmd/lathe-cuda/qwen2.5-0.5b.json) on a
fixed random batch of B rows of T tokens; a step is zero_grad, forward with
the loss, backward, AdamW. Setup, as the HF Trainer with bf16=True does it:
float32 weights and optimizer state, torch.autocast(bfloat16) for the
forward, SDPA attention, fused AdamW. LoRA: PEFT rank 16, alpha 32, no
dropout, on q/k/v/o/gate/up/down, base frozen.

Prints one JSON object per method: {"side": "hf", "method", "tokens_per_s",
"step_s", ...}. Needs no network: the model is built from the config.
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--method", default="lora,full")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--attn", default="sdpa", help="attn_implementation: sdpa, eager or flash_attention_2")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if not torch.cuda.is_available():
        print("hf_bench: no CUDA device visible to PyTorch", file=sys.stderr)
        return 1
    with open(args.config) as f:
        raw = json.load(f)
    dev = torch.device("cuda")
    B, T = args.batch, args.seq
    g = torch.Generator(device="cpu").manual_seed(1)
    ids = torch.randint(0, raw["vocab_size"], (B, T), generator=g).to(dev)

    status = 0
    for method in [m.strip() for m in args.method.split(",") if m.strip()]:
        torch.manual_seed(1)
        cfg = Qwen2Config(**{k: v for k, v in raw.items() if k not in ("architectures", "torch_dtype")})
        cfg._attn_implementation = args.attn
        with dev:
            model = Qwen2ForCausalLM(cfg)
        model.float().train()
        peft_version = None
        if method == "lora":
            import peft
            from peft import LoraConfig, get_peft_model

            peft_version = peft.__version__
            model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, bias="none",
                                                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                     "gate_proj", "up_proj", "down_proj"],
                                                     task_type="CAUSAL_LM"))
        elif method != "full":
            print(f"hf_bench: unknown method {method!r}", file=sys.stderr)
            status = 1
            continue
        params = [p for p in model.parameters() if p.requires_grad]
        try:
            opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, fused=True)
        except (TypeError, RuntimeError):
            opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

        loss = None

        def step():
            nonlocal loss
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(input_ids=ids, labels=ids, use_cache=False)
            out.loss.backward()
            opt.step()
            loss = out.loss

        for _ in range(args.warmup):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize()
        el = time.perf_counter() - t0
        print(json.dumps({
            "side": "hf", "method": method, "batch": B, "seq": T, "steps": args.steps,
            "step_s": el / args.steps, "tokens_per_s": B * T * args.steps / el,
            "trainable_params": sum(p.numel() for p in params), "last_loss": float(loss),
            "attn": args.attn, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft_version, "device": torch.cuda.get_device_name(0),
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
        }), flush=True)
        del model, opt, params, loss
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return status


if __name__ == "__main__":
    sys.exit(main())
