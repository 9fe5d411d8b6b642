#!/usr/bin/env python3
"""PyTorch reference for the model-family kernel options (kernels_torch_test.go).

Reads a JSON request on stdin and writes a JSON answer on stdout. Every
computation runs in float64 on the request's float32 values, written the way
Hugging Face's model code writes it:

- GeGLU: torch.nn.functional.gelu(gate, approximate="tanh") * up (Gemma's
  hidden_activation "gelu_pytorch_tanh"), and its autograd gradients.
- Attention (eager, as Gemma 2 / Mistral / Baichuan 2 13B): scores =
  q @ k^T * scale; Gemma 2's soft-cap scores = tanh(scores / cap) * cap;
  Baichuan's ALiBi bias slope_h * j (_gen_alibi_mask, slopes from
  _get_interleave, the row offset left out as Baichuan leaves it); the mask
  of transformers.masking_utils: causal (kv_idx <= q_idx), sliding window
  (kv_idx > q_idx - sliding_window) and packed sequences (same id); softmax;
  @ v. Gradients by autograd of sum(out * dout).
- Cross-entropy with Gemma 2's final_logit_softcapping: logits = x @ w^T,
  tanh(logits / cap) * cap, F.cross_entropy(reduction="none",
  ignore_index=-1); gradients of grad_scale * sum(losses).
- ALiBi slopes: Baichuan 2's _get_interleave, as float32.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F


def _get_interleave(n):
    # Baichuan 2 13B, modeling_baichuan.py.
    def _get_interleave_power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n).is_integer():
        return _get_interleave_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return (
        _get_interleave_power_of_2(closest_power_of_2)
        + _get_interleave(2 * closest_power_of_2)[0::2][: n - closest_power_of_2]
    )


def f64(values, shape=None):
    # The request's numbers are float32 values: round to float32 first.
    t = torch.tensor(values, dtype=torch.float32).double()
    return t if shape is None else t.reshape(shape)


def flat(t):
    return t.detach().reshape(-1).tolist()


def geglu(req):
    gate = f64(req["gate"]).requires_grad_()
    up = f64(req["up"]).requires_grad_()
    dout = f64(req["dout"])
    out = F.gelu(gate, approximate="tanh") * up
    (out * dout).sum().backward()
    return {"out": flat(out), "dgate": flat(gate.grad), "dup": flat(up.grad)}


def attention(c):
    B, T, Hq, Hkv, D = c["B"], c["T"], c["Hq"], c["Hkv"], c["D"]
    q = f64(c["q"], (B, T, Hq, D)).requires_grad_()
    k = f64(c["k"], (B, T, Hkv, D)).requires_grad_()
    v = f64(c["v"], (B, T, Hkv, D)).requires_grad_()
    dout = f64(c["dout"], (B, T, Hq, D))
    rep = Hq // Hkv
    # [B, H, T, D]; repeat_kv: query head h reads KV head h // rep.
    qh = q.transpose(1, 2)
    kh = k.transpose(1, 2).repeat_interleave(rep, dim=1)
    vh = v.transpose(1, 2).repeat_interleave(rep, dim=1)
    scores = torch.matmul(qh, kh.transpose(2, 3)) * float(torch.tensor(c["scale"], dtype=torch.float32))
    cap = c["softcap"]
    if cap > 0:
        scores = scores / cap
        scores = torch.tanh(scores)
        scores = scores * cap
    if c["alibi"]:
        slopes = torch.tensor(_get_interleave(Hq), dtype=torch.float32).double()
        scores = scores + slopes[None, :, None, None] * torch.arange(T, dtype=torch.float64)[None, None, None, :]
    qi = torch.arange(T)[:, None]
    ki = torch.arange(T)[None, :]
    allowed = (ki <= qi)[None, None]
    if c["window"] > 0:
        allowed = allowed & (ki > qi - c["window"])[None, None]
    if c["seg"] is not None:
        seg = torch.tensor(c["seg"], dtype=torch.int64).reshape(B, T)
        allowed = allowed & (seg[:, None, :, None] == seg[:, None, None, :])
    scores = scores.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    out = torch.matmul(p, vh).transpose(1, 2)
    (out * dout).sum().backward()
    return {"out": flat(out), "dq": flat(q.grad), "dk": flat(k.grad), "dv": flat(v.grad)}


def xent(c):
    N, C, V = c["N"], c["C"], c["V"]
    x = f64(c["x"], (N, C)).requires_grad_()
    w = f64(c["w"], (V, C)).requires_grad_()
    targets = torch.tensor(c["targets"], dtype=torch.int64)
    logits = x @ w.T
    cap = c["softcap"]
    if cap > 0:
        logits = logits / cap
        logits = torch.tanh(logits)
        logits = logits * cap
    losses = F.cross_entropy(logits, targets, ignore_index=-1, reduction="none")
    (losses.sum() * float(torch.tensor(c["grad_scale"], dtype=torch.float32))).backward()
    return {"losses": flat(losses), "dx": flat(x.grad), "dw": flat(w.grad)}


def main():
    req = json.load(sys.stdin)
    ans = {
        "slopes": {str(n): torch.tensor(_get_interleave(n), dtype=torch.float32).tolist() for n in req["slope_heads"]},
        "geglu": geglu(req["geglu"]),
        "attn": [attention(c) for c in req["attn"]],
        "xent": [xent(c) for c in req["xent"]],
    }
    json.dump(ans, sys.stdout)


if __name__ == "__main__":
    main()
