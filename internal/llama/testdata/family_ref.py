#!/usr/bin/python3
"""PyTorch reference for the model families lathe reads besides Llama.

Each family is written here from its own published modelling code's
semantics, in its own checkpoint names and layout (fused projections,
interleaved rotary dims), independently of lathe's mapping onto its Llama
decoder:

  gemma     GemmaForCausalLM: embeddings x sqrt(hidden) (the normaliser in
            the compute dtype), RMSNorm scaling by (1 + weight), GeGLU MLP
            down(gelu_tanh(gate(x)) * up(x)), tied LM head.
  phi3      Phi3ForCausalLM: fused qkv_proj ([q; k; v] rows) and gate_up_proj
            (gate rows first, then up), rotate-half RoPE on the first
            partial_rotary_factor * head_dim dims, longrope scaling
            (inv_freq / short_factor, cos and sin times the attention
            factor sqrt(1 + ln(max/orig) / ln(orig))).
  baichuan  BaichuanForCausalLM (Baichuan 2 7B): fused W_pack ([q; k; v]),
            rotate-half RoPE, the LM head's rows L2-normalised
            (NormHead: F.normalize(weight)).
  chatglm   ChatGLMModel (ChatGLM 3 / GLM-4): word_embeddings, fused
            query_key_value with bias, multi-query groups, rotary embedding on
            the first half of each head with INTERLEAVED pairs (x[2i], x[2i+1])
            and base 10000 * rope_ratio, SwiGLU from the two halves of
            dense_h_to_4h, final_layernorm, output_layer.

All compute is float64. Commands:
  gen  --variant V --seed S --out DIR   random tiny model (config.json,
                                         model.safetensors in the family's names)
                                         and batch.json
  run  --model DIR --batch B.json --out R.safetensors
                                         logits, loss (mean CE over targets >= 0)
                                         and grad.<file tensor name> for every
                                         tensor of the checkpoint
"""

import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_ref import st_load, st_save, write_json  # noqa: E402

DT = torch.float64

VARIANTS = {
    "gemma": dict(
        architectures=["GemmaForCausalLM"], model_type="gemma", vocab_size=96, hidden_size=32,
        intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=12, rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="gelu",
        hidden_activation="gelu_pytorch_tanh", max_position_embeddings=64, tie_word_embeddings=True),
    "gemma2": dict(
        architectures=["Gemma2ForCausalLM"], model_type="gemma2", vocab_size=96, hidden_size=32,
        intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, rms_norm_eps=1e-6, rope_theta=10000.0, hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=64, tie_word_embeddings=True, query_pre_attn_scalar=16,
        attn_logit_softcapping=2.0, final_logit_softcapping=3.0, sliding_window=5),
    "phi3": dict(
        architectures=["Phi3ForCausalLM"], model_type="phi3", vocab_size=96, hidden_size=32,
        intermediate_size=40, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="silu", max_position_embeddings=64,
        original_max_position_embeddings=64, rope_scaling=None, tie_word_embeddings=False),
    "phi3-longrope": dict(
        architectures=["Phi3ForCausalLM"], model_type="phi3", vocab_size=96, hidden_size=32,
        intermediate_size=40, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="silu", max_position_embeddings=256,
        original_max_position_embeddings=32,
        rope_scaling={"type": "longrope", "short_factor": [1.0, 1.1, 1.3, 2.0], "long_factor": [1.0, 2.0, 4.0, 8.0]},
        tie_word_embeddings=False),
    "phi3-partial": dict(
        architectures=["Phi3ForCausalLM"], model_type="phi3", vocab_size=96, hidden_size=32,
        intermediate_size=40, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        rms_norm_eps=1e-5, rope_theta=500.0, hidden_act="silu", max_position_embeddings=64,
        original_max_position_embeddings=64, partial_rotary_factor=0.5, rope_scaling=None,
        tie_word_embeddings=False),
    "baichuan": dict(
        architectures=["BaichuanForCausalLM"], model_type="baichuan", vocab_size=96, hidden_size=32,
        intermediate_size=40, num_hidden_layers=2, num_attention_heads=4, rms_norm_eps=1e-6,
        hidden_act="silu", max_position_embeddings=64, model_max_length=64, tie_word_embeddings=False,
        z_loss_weight=0),
    "baichuan-13b": dict(
        architectures=["BaichuanForCausalLM"], model_type="baichuan", vocab_size=96, hidden_size=48,
        intermediate_size=40, num_hidden_layers=2, num_attention_heads=6, rms_norm_eps=1e-6,
        hidden_act="silu", model_max_length=64, tie_word_embeddings=False),
    "chatglm": dict(
        architectures=["ChatGLMModel"], model_type="chatglm", padded_vocab_size=96, hidden_size=32,
        ffn_hidden_size=40, num_layers=2, num_attention_heads=4, kv_channels=8,
        multi_query_attention=True, multi_query_group_num=2, layernorm_epsilon=1e-5, seq_length=64,
        add_qkv_bias=True, add_bias_linear=False, rmsnorm=True, post_layer_norm=True,
        apply_residual_connection_post_layernorm=False, original_rope=True),
    "chatglm-mha": dict(
        architectures=["ChatGLMForConditionalGeneration"], model_type="chatglm", padded_vocab_size=96,
        hidden_size=32, ffn_hidden_size=40, num_layers=2, num_attention_heads=2, kv_channels=16,
        multi_query_attention=False, layernorm_epsilon=1e-5, seq_length=64, rope_ratio=2.0,
        add_qkv_bias=True, add_bias_linear=True, rmsnorm=True, post_layer_norm=True,
        apply_residual_connection_post_layernorm=False, original_rope=True),
}


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_half(x, pos, inv_freq, scale=1.0):
    """Rotate-half RoPE on the first 2*len(inv_freq) dims of x [B,T,H,D]."""
    rot = 2 * inv_freq.numel()
    ang = pos[..., None].to(DT) * inv_freq  # [B,T,rot/2]
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos()[:, :, None, :] * scale, emb.sin()[:, :, None, :] * scale
    xr, xp = x[..., :rot], x[..., rot:]
    return torch.cat((xr * cos + rotate_half(xr) * sin, xp), dim=-1)


def rope_interleaved(x, pos, inv_freq):
    """ChatGLM's rotary: pairs (2i, 2i+1) of the first 2*len(inv_freq) dims."""
    rot = 2 * inv_freq.numel()
    ang = pos[..., None].to(DT) * inv_freq
    cos, sin = ang.cos()[:, :, None, :], ang.sin()[:, :, None, :]
    xr, xp = x[..., :rot], x[..., rot:]
    xs = xr.reshape(*xr.shape[:-1], rot // 2, 2)
    out = torch.stack((xs[..., 0] * cos - xs[..., 1] * sin, xs[..., 1] * cos + xs[..., 0] * sin), dim=-1)
    return torch.cat((out.flatten(-2), xp), dim=-1)


def alibi_slopes(n):
    """Baichuan 2 13B's (and BLOOM's) slopes, _get_interleave."""
    def pow2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]
    if math.log2(n).is_integer():
        return pow2(n)
    c = 2 ** math.floor(math.log2(n))
    return pow2(c) + alibi_slopes(2 * c)[0::2][: n - c]


def attention(q, k, v, scale, softcap=0.0, window=0, alibi=False):
    """Causal GQA attention: q [B,T,Hq,D], k/v [B,T,Hkv,D] -> [B,T,Hq*D];
    Gemma 2's score soft cap and sliding window, Baichuan's ALiBi bias."""
    B, T, Hq, D = q.shape
    rep = Hq // k.shape[2]
    k = k.repeat_interleave(rep, dim=2)
    v = v.repeat_interleave(rep, dim=2)
    s = torch.einsum("bthd,bshd->bhts", q, k) * scale
    if softcap:
        s = torch.tanh(s / softcap) * softcap
    if alibi:
        slopes = torch.tensor(alibi_slopes(Hq), dtype=DT)
        s = s + slopes[:, None, None] * torch.arange(T, dtype=DT)[None, None, :]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    if window:
        mask = mask & ~torch.ones(T, T, dtype=torch.bool).tril(diagonal=-window)
    s = s.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("bhts,bshd->bthd", p, v).reshape(B, T, Hq * D)


def lin(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def forward(cfg, P, ids):
    mt = cfg["model_type"]
    B, T = ids.shape
    pos = torch.arange(T).expand(B, T)
    if mt == "chatglm":
        return forward_chatglm(cfg, P, ids, pos)
    H, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    Hq = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads", Hq)
    D = cfg.get("head_dim") or H // Hq
    eps = cfg["rms_norm_eps"]
    theta = cfg.get("rope_theta", 10000.0)
    rot = int(D * cfg.get("partial_rotary_factor", 1.0))
    inv = 1.0 / theta ** (torch.arange(0, rot, 2, dtype=DT) / rot)
    scale = 1.0
    rs = cfg.get("rope_scaling")
    if rs:
        inv = inv / torch.tensor(rs["short_factor"], dtype=DT)
        factor = cfg["max_position_embeddings"] / cfg["original_max_position_embeddings"]
        scale = math.sqrt(1 + math.log(factor) / math.log(cfg["original_max_position_embeddings"])) if factor > 1 else 1.0
    gemma = mt in ("gemma", "gemma2")
    alibi = mt == "baichuan" and "max_position_embeddings" not in cfg
    norm = (lambda x, w: rms(x, 1.0 + w, eps)) if gemma else (lambda x, w: rms(x, w, eps))
    h = P["model.embed_tokens.weight"][ids]
    if gemma:
        h = h * torch.tensor(H ** 0.5, dtype=DT)
    for i in range(L):
        p = f"model.layers.{i}."
        x = norm(h, P[p + "input_layernorm.weight"])
        if mt == "phi3":
            q, k, v = lin(x, P[p + "self_attn.qkv_proj.weight"]).split([Hq * D, Hkv * D, Hkv * D], dim=-1)
        elif mt == "baichuan":
            q, k, v = lin(x, P[p + "self_attn.W_pack.weight"]).split([Hq * D, Hkv * D, Hkv * D], dim=-1)
        else:
            q, k, v = (lin(x, P[p + f"self_attn.{n}_proj.weight"]) for n in "qkv")
        q, k = q.reshape(B, T, Hq, D), k.reshape(B, T, Hkv, D)
        if not alibi:
            q, k = rope_half(q, pos, inv, scale), rope_half(k, pos, inv, scale)
        if mt == "gemma2":
            a = attention(q, k, v.reshape(B, T, Hkv, D), cfg["query_pre_attn_scalar"] ** -0.5,
                          softcap=cfg.get("attn_logit_softcapping") or 0.0,
                          window=cfg["sliding_window"] if i % 2 == 0 else 0)
            h = h + norm(lin(a, P[p + "self_attn.o_proj.weight"]), P[p + "post_attention_layernorm.weight"])
            x = norm(h, P[p + "pre_feedforward_layernorm.weight"])
        else:
            a = attention(q, k, v.reshape(B, T, Hkv, D), D ** -0.5, alibi=alibi)
            h = h + lin(a, P[p + "self_attn.o_proj.weight"])
            x = norm(h, P[p + "post_attention_layernorm.weight"])
        if mt == "phi3":
            gate, up = lin(x, P[p + "mlp.gate_up_proj.weight"]).chunk(2, dim=-1)
        else:
            gate, up = lin(x, P[p + "mlp.gate_proj.weight"]), lin(x, P[p + "mlp.up_proj.weight"])
        act = torch.nn.functional.gelu(gate, approximate="tanh") if gemma else torch.nn.functional.silu(gate)
        mo = lin(act * up, P[p + "mlp.down_proj.weight"])
        if mt == "gemma2":
            mo = norm(mo, P[p + "post_feedforward_layernorm.weight"])
        h = h + mo
    h = norm(h, P["model.norm.weight"])
    if gemma or cfg.get("tie_word_embeddings"):
        head = P["model.embed_tokens.weight"]
    else:
        head = P["lm_head.weight"]
    if mt == "baichuan":
        head = torch.nn.functional.normalize(head)
    logits = h @ head.T
    if cfg.get("final_logit_softcapping"):
        cap = cfg["final_logit_softcapping"]
        logits = torch.tanh(logits / cap) * cap
    return logits


def forward_chatglm(cfg, P, ids, pos):
    B, T = ids.shape
    H, L = cfg["hidden_size"], cfg["num_layers"]
    Hq = cfg["num_attention_heads"]
    D = cfg.get("kv_channels") or H // Hq
    G = cfg["multi_query_group_num"] if cfg.get("multi_query_attention") else Hq
    eps = cfg["layernorm_epsilon"]
    n_elem = D // 2
    base = 10000.0 * cfg.get("rope_ratio", 1.0)
    inv = 1.0 / base ** (torch.arange(0, n_elem, 2, dtype=DT) / n_elem)
    bias = cfg.get("add_bias_linear", False)
    h = P["transformer.embedding.word_embeddings.weight"][ids]
    for i in range(L):
        p = f"transformer.encoder.layers.{i}."
        x = rms(h, P[p + "input_layernorm.weight"], eps)
        qkv = lin(x, P[p + "self_attention.query_key_value.weight"], P.get(p + "self_attention.query_key_value.bias"))
        q, k, v = qkv.split([Hq * D, G * D, G * D], dim=-1)
        q = rope_interleaved(q.reshape(B, T, Hq, D), pos, inv)
        k = rope_interleaved(k.reshape(B, T, G, D), pos, inv)
        a = attention(q, k, v.reshape(B, T, G, D), D ** -0.5)
        h = h + lin(a, P[p + "self_attention.dense.weight"], P.get(p + "self_attention.dense.bias") if bias else None)
        x = rms(h, P[p + "post_attention_layernorm.weight"], eps)
        y = lin(x, P[p + "mlp.dense_h_to_4h.weight"], P.get(p + "mlp.dense_h_to_4h.bias") if bias else None)
        g, u = y.chunk(2, dim=-1)
        h = h + lin(torch.nn.functional.silu(g) * u, P[p + "mlp.dense_4h_to_h.weight"], P.get(p + "mlp.dense_4h_to_h.bias") if bias else None)
    h = rms(h, P["transformer.encoder.final_layernorm.weight"], eps)
    return h @ P["transformer.output_layer.weight"].T


def shapes(cfg):
    mt = cfg["model_type"]
    out = {}
    if mt == "chatglm":
        H, I, V, L = cfg["hidden_size"], cfg["ffn_hidden_size"], cfg["padded_vocab_size"], cfg["num_layers"]
        Hq = cfg["num_attention_heads"]
        D = cfg["kv_channels"]
        G = cfg["multi_query_group_num"] if cfg.get("multi_query_attention") else Hq
        bias = cfg.get("add_bias_linear", False)
        out["transformer.embedding.word_embeddings.weight"] = [V, H]
        for i in range(L):
            p = f"transformer.encoder.layers.{i}."
            out[p + "input_layernorm.weight"] = [H]
            out[p + "self_attention.query_key_value.weight"] = [(Hq + 2 * G) * D, H]
            if cfg.get("add_qkv_bias"):
                out[p + "self_attention.query_key_value.bias"] = [(Hq + 2 * G) * D]
            out[p + "self_attention.dense.weight"] = [H, Hq * D]
            out[p + "post_attention_layernorm.weight"] = [H]
            out[p + "mlp.dense_h_to_4h.weight"] = [2 * I, H]
            out[p + "mlp.dense_4h_to_h.weight"] = [H, I]
            if bias:
                out[p + "self_attention.dense.bias"] = [H]
                out[p + "mlp.dense_h_to_4h.bias"] = [2 * I]
                out[p + "mlp.dense_4h_to_h.bias"] = [H]
        out["transformer.encoder.final_layernorm.weight"] = [H]
        out["transformer.output_layer.weight"] = [V, H]
        return out
    H, I, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    Hq = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads", Hq)
    D = cfg.get("head_dim") or H // Hq
    out["model.embed_tokens.weight"] = [V, H]
    for i in range(L):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = [H]
        if mt == "phi3":
            out[p + "self_attn.qkv_proj.weight"] = [(Hq + 2 * Hkv) * D, H]
        elif mt == "baichuan":
            out[p + "self_attn.W_pack.weight"] = [3 * H, H]
        else:
            out[p + "self_attn.q_proj.weight"] = [Hq * D, H]
            out[p + "self_attn.k_proj.weight"] = [Hkv * D, H]
            out[p + "self_attn.v_proj.weight"] = [Hkv * D, H]
        out[p + "self_attn.o_proj.weight"] = [H, Hq * D]
        out[p + "post_attention_layernorm.weight"] = [H]
        if mt == "gemma2":
            out[p + "pre_feedforward_layernorm.weight"] = [H]
            out[p + "post_feedforward_layernorm.weight"] = [H]
        if mt == "phi3":
            out[p + "mlp.gate_up_proj.weight"] = [2 * I, H]
        else:
            out[p + "mlp.gate_proj.weight"] = [I, H]
            out[p + "mlp.up_proj.weight"] = [I, H]
        out[p + "mlp.down_proj.weight"] = [H, I]
    out["model.norm.weight"] = [H]
    if not cfg.get("tie_word_embeddings"):
        out["lm_head.weight"] = [V, H]
    return out


def cmd_gen(a):
    cfg = dict(VARIANTS[a.variant])
    g = torch.Generator().manual_seed(a.seed)
    tensors = {}
    for name, shape in shapes(cfg).items():
        if len(shape) == 1:  # norms (gemma: around 0, as 1 + w) and biases
            base = 0.0 if (cfg["model_type"] in ("gemma", "gemma2") or name.endswith("bias")) else 1.0
            t = base + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            t = 0.15 * torch.randn(shape, generator=g, dtype=torch.float64)
        tensors[name] = t.to(torch.float32)
    os.makedirs(a.out, exist_ok=True)
    st_save(os.path.join(a.out, "model.safetensors"), tensors, {"format": "pt"})
    write_json(os.path.join(a.out, "config.json"), cfg)
    V = cfg.get("vocab_size") or cfg["padded_vocab_size"]
    ids = torch.randint(0, V, (a.batch, a.seq + 1), generator=g)
    tg = ids[:, 1:].clone()
    tg[0, 2] = -100
    write_json(os.path.join(a.out, "batch.json"), {"input_ids": ids[:, :-1].tolist(), "targets": tg.tolist()})


def cmd_run(a):
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    raw, _ = st_load(os.path.join(a.model, "model.safetensors"))
    P = {k: v.to(DT).requires_grad_(True) for k, v in raw.items()}
    with open(a.batch) as f:
        batch = json.load(f)
    ids = torch.tensor(batch["input_ids"])
    tg = torch.tensor(batch["targets"])
    params = P
    if a.adapter:
        # PEFT's rule on each adapted module: W + scale * B @ A, with the
        # module names of the family (fused modules adapted as one).
        with open(os.path.join(a.adapter, "adapter_config.json")) as f:
            acfg = json.load(f)
        r, alpha = acfg["r"], acfg["lora_alpha"]
        scale = alpha / math.sqrt(r) if acfg.get("use_rslora") else alpha / r
        raw_ad, _ = st_load(os.path.join(a.adapter, "adapter_model.safetensors"))
        AD = {k[len("base_model.model."):]: v.to(DT).requires_grad_(True) for k, v in raw_ad.items()}
        params = dict(P)
        for k in AD:
            if k.endswith(".lora_A.weight"):
                mod = k[: -len(".lora_A.weight")]
                params[mod + ".weight"] = P[mod + ".weight"] + scale * AD[mod + ".lora_B.weight"] @ AD[k]
        P = {**P, **{"lora." + k: v for k, v in AD.items()}}
    logits = forward(cfg, params, ids)
    V = logits.shape[-1]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tg.reshape(-1), ignore_index=-100)
    loss.backward()
    out = {"logits": logits.detach().reshape(-1), "loss": loss.detach().reshape(1)}
    for k, v in P.items():
        out["grad." + k] = v.grad if v.grad is not None else torch.zeros_like(v)
    st_save(a.out, {k: v.to(torch.float64) for k, v in out.items()})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--out", required=True)
    g.add_argument("--batch", type=int, default=2)
    g.add_argument("--seq", type=int, default=12)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--batch", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--adapter", help="a PEFT LoRA adapter directory applied to the model")
    a = ap.parse_args()
    {"gen": cmd_gen, "run": cmd_run}[a.cmd](a)


if __name__ == "__main__":
    main()
