#!/usr/bin/python3
"""PyTorch reference for lathe's Llama-family decoder (see README.md here).

Implements the Hugging Face transformers semantics of LlamaForCausalLM,
MistralForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM from their
config.json, written from the modelling code's documented behaviour:

  embed_tokens -> N x [x + attn(rmsnorm(x)); x + mlp(rmsnorm(x))] -> norm -> lm_head

  * RMSNorm: computed in (at least) float32, then cast back, times weight.
  * RoPE: rotate_half layout (first half / second half of head_dim), inv_freq
    = rope_theta ** (-arange(0, head_dim, 2) / head_dim), optional rope_scaling
    of type "llama3" (factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings).
  * Attention: GQA (num_key_value_heads), head_dim possibly != hidden/heads,
    scale head_dim**-0.5, causal mask (and mistral's sliding window when set),
    softmax in float32; qwen2 has q/k/v bias and no o bias; llama/mistral/qwen3
    use attention_bias for all four; qwen3 applies q_norm/k_norm (RMSNorm over
    head_dim, per head) before RoPE.
  * MLP: down(silu(gate(x)) * up(x)), mlp_bias for llama.
  * lm_head, or embed_tokens when tie_word_embeddings.

It depends only on torch (Debian's python3-torch); safetensors files are
parsed and written here with struct/json.

Commands:
  gen      --variant V --seed S --out DIR   random tiny config + weights + batch
  run      --model DIR --batch B.json --out R.safetensors [--adamw ...]
  selftest                                   checks of this script against itself
  variants                                   list the variants gen knows
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile

import torch

IGNORE_INDEX = -100

# --------------------------------------------------------------------------
# safetensors (the subset of the format the reference needs)

_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}


def st_load(path):
    """Reads a safetensors file: returns ({name: tensor}, metadata or None)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: truncated")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > 100_000_000 or 8 + n > len(raw):
        raise ValueError(f"{path}: bad header length {n}")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    data = raw[8 + n :]
    out = {}
    pos = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        s, e = info["data_offsets"]
        if s != pos or e < s or e > len(data):
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {info['data_offsets']}")
        pos = e
        dt = _ST_DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {info['dtype']}")
        shape = info["shape"]
        numel = math.prod(shape)
        esize = torch.empty((), dtype=dt).element_size()
        if numel * esize != e - s:
            raise ValueError(f"{path}: tensor {name}: shape {shape} does not match {e - s} bytes")
        if numel == 0:
            t = torch.empty(shape, dtype=dt)
        else:
            t = torch.frombuffer(bytearray(data[s:e]), dtype=dt).reshape(shape)
        out[name] = t
    if pos != len(data):
        raise ValueError(f"{path}: data section has {len(data)} bytes, tensors cover {pos}")
    return out, meta


def st_save(path, tensors, metadata=None):
    """Writes tensors sorted by name, __metadata__ first, header padded with
    spaces to 8 bytes (as lathe and huggingface/safetensors do); atomic."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype not in _ST_NAMES:
            raise ValueError(f"tensor {name}: unsupported dtype {t.dtype}")
        b = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _ST_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for b in blobs:
                f.write(b)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


# --------------------------------------------------------------------------
# config

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")


class Config:
    def __init__(self, d):
        self.raw = d
        self.model_type = d.get("model_type", "llama")
        if self.model_type not in SUPPORTED:
            raise ValueError(f"model_type {self.model_type!r} not one of {SUPPORTED}")
        self.vocab_size = d["vocab_size"]
        self.hidden_size = d["hidden_size"]
        self.intermediate_size = d["intermediate_size"]
        self.num_hidden_layers = d["num_hidden_layers"]
        self.num_attention_heads = d["num_attention_heads"]
        self.num_key_value_heads = d.get("num_key_value_heads") or self.num_attention_heads
        self.head_dim = d.get("head_dim") or self.hidden_size // self.num_attention_heads
        self.rms_norm_eps = d.get("rms_norm_eps", 1e-6)
        self.rope_theta = d.get("rope_theta", 10000.0)
        self.rope_scaling = d.get("rope_scaling")
        self.tie_word_embeddings = d.get("tie_word_embeddings", False)
        self.hidden_act = d.get("hidden_act", "silu")
        if self.hidden_act != "silu":
            raise ValueError(f"hidden_act {self.hidden_act!r} not supported (silu only)")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.model_type == "qwen2":
            self.qkv_bias, self.o_bias = True, False
        else:
            b = bool(d.get("attention_bias", False))
            self.qkv_bias, self.o_bias = b, b
        self.mlp_bias = bool(d.get("mlp_bias", False)) if self.model_type == "llama" else False
        self.qk_norm = self.model_type == "qwen3"
        self.sliding_window = None
        if self.model_type == "mistral":
            self.sliding_window = d.get("sliding_window")
        elif d.get("use_sliding_window"):
            raise ValueError(f"{self.model_type}: use_sliding_window is not supported")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            if kind not in ("llama3", "default"):
                raise ValueError(f"rope_scaling type {kind!r} not supported (llama3 only)")


def param_shapes(cfg):
    """HF tensor names and shapes, in a fixed order."""
    H, D, I = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size
    Hq, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    s = {"model.embed_tokens.weight": (cfg.vocab_size, H)}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        s[p + "input_layernorm.weight"] = (H,)
        s[p + "self_attn.q_proj.weight"] = (Hq * D, H)
        s[p + "self_attn.k_proj.weight"] = (Hkv * D, H)
        s[p + "self_attn.v_proj.weight"] = (Hkv * D, H)
        s[p + "self_attn.o_proj.weight"] = (H, Hq * D)
        if cfg.qkv_bias:
            s[p + "self_attn.q_proj.bias"] = (Hq * D,)
            s[p + "self_attn.k_proj.bias"] = (Hkv * D,)
            s[p + "self_attn.v_proj.bias"] = (Hkv * D,)
        if cfg.o_bias:
            s[p + "self_attn.o_proj.bias"] = (H,)
        if cfg.qk_norm:
            s[p + "self_attn.q_norm.weight"] = (D,)
            s[p + "self_attn.k_norm.weight"] = (D,)
        s[p + "post_attention_layernorm.weight"] = (H,)
        s[p + "mlp.gate_proj.weight"] = (I, H)
        s[p + "mlp.up_proj.weight"] = (I, H)
        s[p + "mlp.down_proj.weight"] = (H, I)
        if cfg.mlp_bias:
            s[p + "mlp.gate_proj.bias"] = (I,)
            s[p + "mlp.up_proj.bias"] = (I,)
            s[p + "mlp.down_proj.bias"] = (H,)
    s["model.norm.weight"] = (H,)
    if not cfg.tie_word_embeddings:
        s["lm_head.weight"] = (cfg.vocab_size, H)
    return s


def load_model(model_dir, dtype):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = Config(json.load(f))
    tensors, _ = st_load(os.path.join(model_dir, "model.safetensors"))
    want = param_shapes(cfg)
    if cfg.tie_word_embeddings and "lm_head.weight" in tensors:
        # transformers ignores a stored lm_head when tied; so do we.
        del tensors["lm_head.weight"]
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    if missing or extra:
        raise ValueError(f"{model_dir}: missing tensors {missing}, unexpected tensors {extra}")
    params = {}
    for name, shape in want.items():
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise ValueError(f"{model_dir}: tensor {name} has shape {tuple(t.shape)}, want {shape}")
        params[name] = t.to(dtype).clone().requires_grad_(True)
    return cfg, params


# --------------------------------------------------------------------------
# the model


def rms_norm(x, w, eps):
    """HF LlamaRMSNorm: normalise in float32 (or wider), cast back, scale."""
    in_dtype = x.dtype
    h = x.to(torch.promote_types(in_dtype, torch.float32))
    if MIXED_BF16[0]:
        # lathe's rstd: the mean square in double, rounded once, so that
        # outputs rounded to bfloat16 round as lathe's do.
        h = h * torch.rsqrt(h.double().pow(2).mean(-1, keepdim=True) + eps).to(h.dtype)
    else:
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(in_dtype)


def rope_inv_freq(cfg, dtype):
    D = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, D, 2, dtype=torch.int64).to(torch.float64) / D))
    rs = cfg.rope_scaling
    if rs is not None and rs.get("rope_type", rs.get("type")) == "llama3":
        factor = rs["factor"]
        lo, hi = rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        lo_wavelen, hi_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > lo_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= hi_wavelen) & (wavelen <= lo_wavelen)
        inv = torch.where(medium, smoothed, scaled)
    return inv.to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rope(x, cos, sin):
    # x: [B, heads, T, D]; cos/sin: [B, T, D]
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def attention_mask(cfg, position_ids, segment_ids):
    """[B, T, T] boolean: query i may attend key j."""
    B, T = position_ids.shape
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    m = (j <= i)[None].expand(B, T, T).clone()
    if cfg.sliding_window is not None:
        m &= (i - j < cfg.sliding_window)[None]
    if segment_ids is not None:
        m &= segment_ids[:, :, None] == segment_ids[:, None, :]
    return m


# MIXED_BF16[0] turns on lathe's bf16 mixed precision (compute_type
# "bf16": llama.Options BF16 and BF16Activations): every linear layer's
# base weight and the activation entering it are rounded to bfloat16 (to
# nearest even) where the product reads them, and so are the activations
# lathe keeps in bfloat16: the q, k, v, gate and up projections' outputs
# (bias and adapter included; q and k only without q/k norms, whose
# outputs are rounded instead) and RoPE's output. The math stays in the
# compute dtype and gradients pass through every rounding unchanged
# (lathe keeps float32 gradients and masters). Biases, adapters, norm
# weights, embeddings, the residual stream and the LM head are not
# rounded.
MIXED_BF16 = [False]


class _RoundBF16(torch.autograd.Function):
    """bfloat16 rounding with a straight-through (identity) gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.to(torch.float32).to(torch.bfloat16).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g


def round_bf16(x):
    return _RoundBF16.apply(x) if MIXED_BF16[0] else x


class _AttnBF16Out(torch.autograd.Function):
    """Attention whose output is kept in bfloat16 (lathe under --mixed
    bf16): the forward is softmax(scale·q·kᵀ masked)·v; the backward is the
    flash-attention one, whose D = rowsum(dO·O) reads the kept (rounded)
    output O, as lathe's kernels do."""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale):
        s = (q @ k.transpose(-1, -2)) * scale
        s = s.masked_fill(~mask, float("-inf"))
        p = torch.softmax(s, dim=-1)
        o = p @ v
        ctx.save_for_backward(q, k, v, p, _RoundBF16.apply(o))
        ctx.scale = scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, p, o = ctx.saved_tensors
        dv = p.transpose(-1, -2) @ do
        dp = do @ v.transpose(-1, -2)
        d = (do * o).sum(-1, keepdim=True)
        ds = p * (dp - d) * ctx.scale
        return ds @ k, ds.transpose(-1, -2) @ q, dv, None, None


# LoRA scale of the adapters loaded by load_adapter (PEFT: lora_alpha / r,
# or lora_alpha / sqrt(r) with use_rslora).
LORA_SCALE = [0.0]


def linear(x, params, name, has_bias):
    x = round_bf16(x)
    y = x @ round_bf16(params[name + ".weight"]).t()
    if has_bias:
        y = y + params[name + ".bias"]
    a = params.get(name + ".lora_A.weight")
    if a is not None:
        # PEFT's LoRA Linear.forward (no dropout at evaluation):
        # result + lora_B(lora_A(dropout(x))) * scaling
        y = y + (x @ a.t()) @ params[name + ".lora_B.weight"].t() * LORA_SCALE[0]
    return y


def load_adapter(adapter_dir, params, dtype):
    """Adds a PEFT LoRA adapter's tensors to params under in-model names
    (PEFT stores base_model.model.<module>.lora_A.weight) and sets the
    scale from adapter_config.json, the way PEFT reads them."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        ac = json.load(f)
    if ac.get("peft_type") != "LORA":
        raise ValueError("adapter: peft_type %r" % ac.get("peft_type"))
    r, alpha = ac["r"], ac["lora_alpha"]
    LORA_SCALE[0] = alpha / math.sqrt(r) if ac.get("use_rslora") else alpha / r
    tensors, _ = st_load(os.path.join(adapter_dir, "adapter_model.safetensors"))
    prefix = "base_model.model."
    for name, t in tensors.items():
        if not name.startswith(prefix):
            raise ValueError("adapter: tensor %s lacks the PEFT prefix" % name)
        inner = name[len(prefix):].replace(".default.", ".")
        module = inner.rsplit(".lora_", 1)[0]
        if module + ".weight" not in params:
            raise ValueError("adapter: %s adapts no linear module of the model" % name)
        params[inner] = t.to(dtype).clone().requires_grad_(True)


def final_hidden(cfg, params, input_ids, position_ids=None, segment_ids=None):
    """The final normed hidden states [B, T, H] (forward without the head)."""
    return forward(cfg, params, input_ids, position_ids, segment_ids, hidden=True)


def forward(cfg, params, input_ids, position_ids=None, segment_ids=None, hidden=False):
    """Returns logits [B, T, V] in the parameters' dtype (the final hidden
    states [B, T, H] with hidden)."""
    B, T = input_ids.shape
    Hq, Hkv, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    rep = Hq // Hkv
    dtype = params["model.embed_tokens.weight"].dtype
    if position_ids is None:
        position_ids = torch.arange(T)[None].expand(B, T)
    inv = rope_inv_freq(cfg, torch.float64)
    freqs = position_ids.to(torch.float64)[..., None] * inv  # [B, T, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    mask = attention_mask(cfg, position_ids, segment_ids)[:, None]  # [B, 1, T, T]
    scale = D ** -0.5

    x = params["model.embed_tokens.weight"][input_ids]
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        h = rms_norm(x, params[p + "input_layernorm.weight"], cfg.rms_norm_eps)
        q = linear(h, params, p + "self_attn.q_proj", cfg.qkv_bias).view(B, T, Hq, D)
        k = linear(h, params, p + "self_attn.k_proj", cfg.qkv_bias).view(B, T, Hkv, D)
        v = round_bf16(linear(h, params, p + "self_attn.v_proj", cfg.qkv_bias)).view(B, T, Hkv, D)
        if cfg.qk_norm:
            q = rms_norm(q, params[p + "self_attn.q_norm.weight"], cfg.rms_norm_eps)
            k = rms_norm(k, params[p + "self_attn.k_norm.weight"], cfg.rms_norm_eps)
        q, k = round_bf16(q), round_bf16(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q, k = round_bf16(apply_rope(q, cos, sin)), round_bf16(apply_rope(k, cos, sin))
        # GQA: query head h reads key/value head h // rep.
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        if MIXED_BF16[0]:
            o = _AttnBF16Out.apply(q, k, v, mask, scale)
        else:
            s = (q @ k.transpose(-1, -2)) * scale
            s = s.masked_fill(~mask, float("-inf"))
            a = torch.softmax(s.to(torch.promote_types(dtype, torch.float32)), dim=-1).to(dtype)
            o = a @ v
        o = o.transpose(1, 2).reshape(B, T, Hq * D)
        x = x + linear(o, params, p + "self_attn.o_proj", cfg.o_bias)
        h = rms_norm(x, params[p + "post_attention_layernorm.weight"], cfg.rms_norm_eps)
        g = round_bf16(linear(h, params, p + "mlp.gate_proj", cfg.mlp_bias))
        u = round_bf16(linear(h, params, p + "mlp.up_proj", cfg.mlp_bias))
        x = x + linear(torch.nn.functional.silu(g) * u, params, p + "mlp.down_proj", cfg.mlp_bias)
    x = rms_norm(x, params["model.norm.weight"], cfg.rms_norm_eps)
    if hidden:
        return x
    head = params["model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"]
    return x @ head.t()


def causal_lm_loss(logits, targets):
    """Mean cross-entropy over targets != -100. targets are ALREADY SHIFTED:
    targets[b, t] is the token position t must predict (HF's labels[b, t+1]);
    logits are upcast to float32 (at least) as transformers does."""
    n = int((targets != IGNORE_INDEX).sum())
    if n == 0:
        raise ValueError("batch has no targets (all -100)")
    lf = logits.to(torch.promote_types(logits.dtype, torch.float32))
    total = torch.nn.functional.cross_entropy(
        lf.reshape(-1, lf.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return total / n, n


# --------------------------------------------------------------------------
# batches

def load_batch(path):
    with open(path) as f:
        b = json.load(f)
    ids = torch.tensor(b["input_ids"], dtype=torch.int64)
    tg = torch.tensor(b["targets"], dtype=torch.int64)
    if ids.dim() != 2 or tg.shape != ids.shape:
        raise ValueError(f"{path}: input_ids and targets must be [B][T] of the same shape")
    pos = torch.tensor(b["position_ids"], dtype=torch.int64) if b.get("position_ids") is not None else None
    seg = torch.tensor(b["segment_ids"], dtype=torch.int64) if b.get("segment_ids") is not None else None
    for name, t in (("position_ids", pos), ("segment_ids", seg)):
        if t is not None and t.shape != ids.shape:
            raise ValueError(f"{path}: {name} must have the shape of input_ids")
    return ids, tg, pos, seg


# --------------------------------------------------------------------------
# run

def decay_mask(names, no_decay_norms_bias):
    """HF Trainer excludes biases and norm weights from weight decay; plain
    torch AdamW (the default here) decays everything."""
    out = {}
    for n in names:
        out[n] = not (no_decay_norms_bias and (n.endswith(".bias") or "norm" in n))
    return out


def adamw_steps(cfg, params, batch, steps, lr, betas, eps, wd, no_decay_norms_bias):
    """Runs `steps` torch.optim.AdamW steps on the same batch; returns the
    losses measured before each step."""
    ids, tg, pos, seg = batch
    decay = decay_mask(params, no_decay_norms_bias)
    groups = [
        {"params": [params[n] for n in params if decay[n]], "weight_decay": wd},
        {"params": [params[n] for n in params if not decay[n]], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False)
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss, _ = causal_lm_loss(forward(cfg, params, ids, pos, seg), tg)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def cmd_run(a):
    dtype = {"float64": torch.float64, "float32": torch.float32}[a.dtype]
    MIXED_BF16[0] = a.mixed == "bf16"
    cfg, params = load_model(a.model, dtype)
    if a.adapter:
        load_adapter(a.adapter, params, dtype)
    batch = load_batch(a.batch)
    ids, tg, pos, seg = batch
    if int(ids.max()) >= cfg.vocab_size or int(ids.min()) < 0:
        raise ValueError("input_ids out of the vocabulary")
    extra = {}
    if a.loss == "mean":
        logits = forward(cfg, params, ids, pos, seg)
        loss, n = causal_lm_loss(logits, tg)
    else:
        # weighted: Σ w[b,t]·CE[b,t]; value: Σ w[b,t]·v[b,t] with the value
        # head v = h·wᵀ + b on the final hidden state (TRL's ValueHead).
        with open(a.weights) as f:
            w = torch.tensor(json.load(f), dtype=dtype).reshape(ids.shape)
        n = int((tg != IGNORE_INDEX).sum())
        if a.loss == "weighted":
            logits = forward(cfg, params, ids, pos, seg)
            lf = logits.to(torch.promote_types(logits.dtype, torch.float32))
            ce = torch.nn.functional.cross_entropy(lf.reshape(-1, lf.shape[-1]), tg.reshape(-1),
                                                   ignore_index=IGNORE_INDEX, reduction="none").reshape(ids.shape)
            loss = (w * ce).sum()
            extra["token_losses"] = ce.detach()
        else:
            vh, _ = st_load(os.path.join(a.model, "value_head.safetensors"))
            for k in ("v_head.summary.weight", "v_head.summary.bias"):
                params[k] = vh[k].to(dtype).clone().requires_grad_(True)
            h = final_hidden(cfg, params, ids, pos, seg)
            vals = (h @ params["v_head.summary.weight"].t()).squeeze(-1) + params["v_head.summary.bias"]
            loss = (w * vals).sum()
            extra["values"] = vals.detach()
            logits = forward(cfg, params, ids, pos, seg)
    loss.backward()
    odt = {"F32": torch.float32, "F64": torch.float64}[a.out_dtype]
    out = {
        "logits": logits.detach().to(odt),
        "loss": loss.detach().to(torch.float64).reshape(()),
        "num_targets": torch.tensor(n, dtype=torch.int64),
    }
    for name, p in params.items():
        if p.grad is None:  # e.g. the LM head under --loss value
            p.grad = torch.zeros_like(p)
        out["grad." + name] = p.grad.detach().to(odt)
    for name, t in extra.items():
        out[name] = t.to(odt)
    summary = {"loss": float(loss), "num_targets": n, "dtype": a.dtype}
    if a.adamw_steps > 0:
        fresh_cfg, fresh = load_model(a.model, dtype)
        losses = adamw_steps(fresh_cfg, fresh, batch, a.adamw_steps, a.lr, (a.beta1, a.beta2), a.eps,
                             a.weight_decay, a.no_decay_norms_bias)
        for name, p in fresh.items():
            out["adamw." + name] = p.detach().to(odt)
        summary["adamw"] = {"steps": a.adamw_steps, "lr": a.lr, "betas": [a.beta1, a.beta2], "eps": a.eps,
                            "weight_decay": a.weight_decay, "no_decay_norms_bias": a.no_decay_norms_bias,
                            "losses_before_each_step": losses}
    st_save(a.out, out, {"format": "lathe-llama-ref", "loss": repr(float(loss))})
    if a.json:
        write_json(a.json, summary)
    print(json.dumps(summary))


# --------------------------------------------------------------------------
# gen

VARIANTS = {
    # name: (model_type, config overrides)
    "llama-gqa": ("llama", {"num_attention_heads": 4, "num_key_value_heads": 2}),
    "llama-mha": ("llama", {"num_attention_heads": 4, "num_key_value_heads": 4}),
    "llama3-rope": ("llama", {
        "num_attention_heads": 4, "num_key_value_heads": 1, "rope_theta": 10000.0,
        "tie_word_embeddings": True, "max_position_embeddings": 512,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}),
    "mistral": ("mistral", {"num_attention_heads": 4, "num_key_value_heads": 2, "sliding_window": None}),
    "mistral-window": ("mistral", {"num_attention_heads": 4, "num_key_value_heads": 2, "sliding_window": 5}),
    "qwen2-bias": ("qwen2", {"num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True,
                             "rope_theta": 1000000.0, "use_sliding_window": False}),
    "qwen3-qknorm": ("qwen3", {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                               "tie_word_embeddings": True, "rope_theta": 1000000.0,
                               "use_sliding_window": False, "attention_bias": False}),
    "llama-bias": ("llama", {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 24,
                             "attention_bias": True, "mlp_bias": True}),
}

ARCH = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
        "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}


def make_config(variant):
    mt, over = VARIANTS[variant]
    d = {
        "architectures": [ARCH[mt]], "model_type": mt, "vocab_size": 96, "hidden_size": 32,
        "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4, "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 128, "tie_word_embeddings": False, "torch_dtype": "float32",
        "initializer_range": 0.02, "bos_token_id": 1, "eos_token_id": 2,
    }
    d.update(over)
    return d


def random_params(cfg, gen, dtype=torch.float32):
    """Weights N(0, 0.1^2), norm weights 1 + N(0, 0.1^2), biases N(0, 0.05^2):
    larger than HF's 0.02 init so attention and norms are far from trivial."""
    out = {}
    for name, shape in param_shapes(cfg).items():
        if "norm" in name:
            t = 1 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        elif name.endswith(".bias"):
            t = 0.05 * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            t = 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        out[name] = t.to(dtype)
    return out


def random_batch(cfg, gen, B=2, T=12):
    ids = torch.randint(0, cfg.vocab_size, (B, T), generator=gen)
    tg = torch.full((B, T), IGNORE_INDEX, dtype=torch.int64)
    tg[:, :-1] = ids[:, 1:]
    tg[1, :4] = IGNORE_INDEX  # a masked prompt in the second row
    return {"input_ids": ids.tolist(), "targets": tg.tolist()}


def cmd_gen(a):
    os.makedirs(a.out, exist_ok=True)
    d = make_config(a.variant)
    cfg = Config(d)
    gen = torch.Generator().manual_seed(a.seed)
    dt = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}[a.weights_dtype]
    d["torch_dtype"] = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[a.weights_dtype]
    params = random_params(cfg, gen, dt)
    write_json(os.path.join(a.out, "config.json"), d)
    st_save(os.path.join(a.out, "model.safetensors"), params, {"format": "pt"})
    write_json(os.path.join(a.out, "batch.json"), random_batch(cfg, gen, a.batch, a.seq))
    print(json.dumps({"variant": a.variant, "dir": a.out, "params": sum(p.numel() for p in params.values())}))


# --------------------------------------------------------------------------
# selftest

def naive_forward(cfg, params, ids):
    """Slow loop-by-loop attention (no repeat_interleave, no masking by -inf)
    to check the vectorised forward's GQA, RoPE and causal mask."""
    B, T = ids.shape
    Hq, Hkv, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    inv = rope_inv_freq(cfg, torch.float64)
    half = D // 2

    def rope(vec, pos):  # vec [D]
        out = torch.empty_like(vec)
        for i in range(half):
            c, s = math.cos(pos * float(inv[i])), math.sin(pos * float(inv[i]))
            x1, x2 = vec[i], vec[i + half]
            out[i] = x1 * c - x2 * s
            out[i + half] = x2 * c + x1 * s
        return out

    def norm(v, w):
        return w * v / torch.sqrt((v * v).mean(-1, keepdim=True) + cfg.rms_norm_eps)

    x = params["model.embed_tokens.weight"][ids]
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        h = norm(x, params[p + "input_layernorm.weight"])
        q = linear(h, params, p + "self_attn.q_proj", cfg.qkv_bias).view(B, T, Hq, D)
        k = linear(h, params, p + "self_attn.k_proj", cfg.qkv_bias).view(B, T, Hkv, D)
        v = linear(h, params, p + "self_attn.v_proj", cfg.qkv_bias).view(B, T, Hkv, D)
        if cfg.qk_norm:
            q = norm(q, params[p + "self_attn.q_norm.weight"])
            k = norm(k, params[p + "self_attn.k_norm.weight"])
        o = torch.zeros(B, T, Hq, D, dtype=x.dtype)
        for b in range(B):
            for hq in range(Hq):
                kv = hq * Hkv // Hq
                for i in range(T):
                    qi = rope(q[b, i, hq], i)
                    lo = 0 if cfg.sliding_window is None else max(0, i - cfg.sliding_window + 1)
                    scores = torch.stack([rope(k[b, j, kv], j) @ qi / math.sqrt(D) for j in range(lo, i + 1)])
                    w = torch.softmax(scores, 0)
                    o[b, i, hq] = sum(w[j - lo] * v[b, j, kv] for j in range(lo, i + 1))
        x = x + linear(o.reshape(B, T, Hq * D), params, p + "self_attn.o_proj", cfg.o_bias)
        h = norm(x, params[p + "post_attention_layernorm.weight"])
        g = round_bf16(linear(h, params, p + "mlp.gate_proj", cfg.mlp_bias))
        u = round_bf16(linear(h, params, p + "mlp.up_proj", cfg.mlp_bias))
        x = x + linear(g * torch.sigmoid(g) * u, params, p + "mlp.down_proj", cfg.mlp_bias)
    x = norm(x, params["model.norm.weight"])
    head = params["model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"]
    return x @ head.t()


def cmd_selftest(a):
    torch.manual_seed(0)
    failures = []

    def check(name, ok, detail=""):
        print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
        if not ok:
            failures.append(name)

    def fresh(variant, seed=1, T=12):
        d = make_config(variant)
        cfg = Config(d)
        gen = torch.Generator().manual_seed(seed)
        params = {n: t.to(torch.float64).requires_grad_(True) for n, t in random_params(cfg, gen).items()}
        b = random_batch(cfg, gen, 2, T)
        return cfg, params, torch.tensor(b["input_ids"]), torch.tensor(b["targets"])

    # 1. Vectorised forward == naive loops, every variant.
    for v in VARIANTS:
        cfg, params, ids, tg = fresh(v, T=8)
        with torch.no_grad():
            diff = (forward(cfg, params, ids) - naive_forward(cfg, params, ids)).abs().max().item()
        check(f"forward == naive [{v}]", diff < 1e-10, f"max|diff|={diff:.2e}")

    # 2. GQA (Hkv < Hq) equals MHA with each k/v head copied to its query group;
    #    the GQA k/v gradients are the MHA ones summed over each group.
    for v in ("llama-gqa", "qwen2-bias", "qwen3-qknorm", "llama3-rope"):
        cfg, params, ids, tg = fresh(v)
        rep = cfg.num_attention_heads // cfg.num_key_value_heads
        mcfg = Config(dict(cfg.raw, num_key_value_heads=cfg.num_attention_heads))
        mparams = {}
        for n, t in params.items():
            t = t.detach()
            if any(s in n for s in ("k_proj", "v_proj")):
                t = t.reshape(cfg.num_key_value_heads, cfg.head_dim, *t.shape[1:])
                t = t.repeat_interleave(rep, dim=0).reshape(-1, *t.shape[2:])
            mparams[n] = t.clone().requires_grad_(True)
        lg, _ = causal_lm_loss(forward(cfg, params, ids), tg)
        lm, _ = causal_lm_loss(forward(mcfg, mparams, ids), tg)
        lg.backward()
        lm.backward()
        gdiff = 0.0
        for n, p in params.items():
            gm = mparams[n].grad
            if any(s in n for s in ("k_proj", "v_proj")):
                gm = gm.reshape(cfg.num_key_value_heads, rep, cfg.head_dim, *gm.shape[1:]).sum(1).reshape(p.shape)
            gdiff = max(gdiff, (p.grad - gm).abs().max().item())
        check(f"GQA == MHA with copied k/v heads [{v}]", abs(lg.item() - lm.item()) < 1e-12 and gdiff < 1e-10,
              f"|dloss|={abs(lg.item() - lm.item()):.1e} max|dgrad|={gdiff:.1e}")

    # 3. Causality: changing the last token leaves earlier logits unchanged.
    for v in VARIANTS:
        cfg, params, ids, tg = fresh(v)
        ids2 = ids.clone()
        ids2[:, -1] = (ids2[:, -1] + 1) % cfg.vocab_size
        with torch.no_grad():
            a1, a2 = forward(cfg, params, ids), forward(cfg, params, ids2)
        same = torch.equal(a1[:, :-1], a2[:, :-1]) and not torch.equal(a1[:, -1], a2[:, -1])
        check(f"causal [{v}]", same)

    # 4. Tied embeddings == untied with lm_head a copy of embed_tokens.
    cfg, params, ids, tg = fresh("qwen2-bias")
    ucfg = Config(dict(cfg.raw, tie_word_embeddings=False))
    up = dict(params)
    up["lm_head.weight"] = params["model.embed_tokens.weight"]
    with torch.no_grad():
        diff = (forward(cfg, params, ids) - forward(ucfg, up, ids)).abs().max().item()
    check("tied == untied copy", diff == 0.0, f"max|diff|={diff:.1e}")

    # 5. llama3 rope scaling: high frequencies kept, low ones divided by factor,
    #    medium ones in between; factor 1 changes nothing.
    cfg = Config(make_config("llama3-rope"))
    base = Config(dict(cfg.raw, rope_scaling=None))
    inv, inv0 = rope_inv_freq(cfg, torch.float64), rope_inv_freq(base, torch.float64)
    wl = 2 * math.pi / inv0
    rs = cfg.rope_scaling
    hi_wl = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
    lo_wl = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
    ok = bool(torch.all(torch.where(wl < hi_wl, inv == inv0, True))
              and torch.all(torch.where(wl > lo_wl, (inv - inv0 / rs["factor"]).abs() < 1e-15, True))
              and torch.all(torch.where((wl >= hi_wl) & (wl <= lo_wl), (inv <= inv0) & (inv >= inv0 / rs["factor"]), True))
              and bool((wl < hi_wl).any() and (wl > lo_wl).any() and ((wl >= hi_wl) & (wl <= lo_wl)).any()))
    one = Config(dict(cfg.raw, rope_scaling=dict(rs, factor=1.0)))
    ok = ok and torch.allclose(rope_inv_freq(one, torch.float64), inv0, rtol=0, atol=1e-15)
    check("llama3 rope scaling regimes", ok, f"inv_freq={[f'{x:.3g}' for x in inv.tolist()]}")

    # 6. Loss decreases over a few AdamW steps (each variant, float32 as on the Go side).
    for v in VARIANTS:
        d = make_config(v)
        cfg = Config(d)
        gen = torch.Generator().manual_seed(7)
        params = {n: t.clone().requires_grad_(True) for n, t in random_params(cfg, gen).items()}
        b = random_batch(cfg, gen)
        batch = (torch.tensor(b["input_ids"]), torch.tensor(b["targets"]), None, None)
        losses = adamw_steps(cfg, params, batch, 6, 1e-2, (0.9, 0.999), 1e-8, 0.01, True)
        check(f"AdamW loss decreases [{v}]", all(x > y for x, y in zip(losses, losses[1:])),
              " ".join(f"{x:.4f}" for x in losses))

    # 7. One AdamW step matches the update rule written out by hand.
    cfg, params, ids, tg = fresh("llama-gqa")
    p0 = {n: t.detach().clone() for n, t in params.items()}
    loss, _ = causal_lm_loss(forward(cfg, params, ids), tg)
    loss.backward()
    grads = {n: t.grad.detach().clone() for n, t in params.items()}
    lr, b1, b2, eps, wd = 1e-3, 0.9, 0.95, 1e-8, 0.1
    adamw_steps(cfg, params, (ids, tg, None, None), 1, lr, (b1, b2), eps, wd, False)
    worst = 0.0
    for n, p in params.items():
        g = grads[n]
        m, v2 = (1 - b1) * g, (1 - b2) * g * g
        want = p0[n] * (1 - lr * wd) - lr * (m / (1 - b1)) / ((v2 / (1 - b2)).sqrt() + eps)
        worst = max(worst, (p.detach() - want).abs().max().item())
    check("AdamW step == hand-written rule", worst < 1e-12, f"max|diff|={worst:.1e}")

    # 8. Packing: one row holding two segments (segment_ids, position_ids
    #    restarting at 0) gives the logits of the two sequences run alone.
    for v in ("llama-gqa", "qwen3-qknorm", "llama3-rope"):
        cfg, params, ids, tg = fresh(v)
        a, b = ids[0, :5], ids[1, :7]
        packed = torch.cat((a, b))[None]
        pos = torch.cat((torch.arange(5), torch.arange(7)))[None]
        seg = torch.tensor([[0] * 5 + [1] * 7])
        with torch.no_grad():
            lp = forward(cfg, params, packed, pos, seg)[0]
            la, lb = forward(cfg, params, a[None])[0], forward(cfg, params, b[None])[0]
        diff = max((lp[:5] - la).abs().max().item(), (lp[5:] - lb).abs().max().item())
        check(f"packed segments == separate sequences [{v}]", diff < 1e-12, f"max|diff|={diff:.1e}")

    # 9. safetensors writer/reader round trip (all dtypes the reference writes).
    with tempfile.TemporaryDirectory() as d:
        ts = {"a": torch.randn(3, 4), "b": torch.randn(5, dtype=torch.float64), "c": torch.tensor(7),
              "d": torch.randn(2, 2).to(torch.bfloat16), "e": torch.randn(3).to(torch.float16),
              "z": torch.empty(0, 3)}
        path = os.path.join(d, "t.safetensors")
        st_save(path, ts, {"format": "pt"})
        back, meta = st_load(path)
        ok = meta == {"format": "pt"} and set(back) == set(ts) and all(
            back[k].dtype == ts[k].dtype and torch.equal(back[k], ts[k]) for k in ts)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
        check("safetensors round trip", ok and n % 8 == 0)

    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        sys.exit(1)
    print("all checks passed")


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("gen", help="write a random tiny model (config.json, model.safetensors, batch.json)")
    g.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--out", required=True)
    g.add_argument("--weights-dtype", default="F32", choices=["F32", "BF16", "F16"])
    g.add_argument("--batch", type=int, default=2)
    g.add_argument("--seq", type=int, default=12)

    r = sub.add_parser("run", help="logits, loss, gradients (and AdamW step) for a model and batch")
    r.add_argument("--model", required=True, help="directory with config.json and model.safetensors")
    r.add_argument("--batch", required=True, help="JSON: input_ids, targets (pre-shifted), optional position_ids, segment_ids")
    r.add_argument("--out", required=True, help="result .safetensors")
    r.add_argument("--json", help="also write a JSON summary here")
    r.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="compute dtype")
    r.add_argument("--out-dtype", default="F32", choices=["F32", "F64"], help="dtype of logits/grads/params written")
    r.add_argument("--adamw-steps", type=int, default=0, help="AdamW steps on the batch from the loaded weights (0: none)")
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--beta1", type=float, default=0.9)
    r.add_argument("--beta2", type=float, default=0.999)
    r.add_argument("--eps", type=float, default=1e-8)
    r.add_argument("--weight-decay", type=float, default=0.0)
    r.add_argument("--no-decay-norms-bias", action="store_true",
                   help="HF Trainer grouping: no weight decay for *.bias and *norm* parameters")
    r.add_argument("--mixed", default="none", choices=["none", "bf16"],
                   help="bf16: round linear weights and the activations entering them to bfloat16 (lathe's compute_type bf16)")
    r.add_argument("--adapter", help="a PEFT LoRA adapter directory applied to the model")
    r.add_argument("--loss", default="mean", choices=["mean", "weighted", "value"],
                   help="mean causal-LM loss; Σ w·CE per token; or Σ w·value (needs --weights)")
    r.add_argument("--weights", help="JSON [B][T] of per-token weights for --loss weighted|value")

    sub.add_parser("selftest", help="check the reference against itself")
    sub.add_parser("variants", help="list gen's variants")

    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if a.cmd == "gen":
        cmd_gen(a)
    elif a.cmd == "run":
        cmd_run(a)
    elif a.cmd == "selftest":
        cmd_selftest(a)
    else:
        for v in sorted(VARIANTS):
            print(v, json.dumps(make_config(v), sort_keys=True))


if __name__ == "__main__":
    main()
