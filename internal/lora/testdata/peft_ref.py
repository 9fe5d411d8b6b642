#!/usr/bin/env python3
"""Peer reference for internal/lora: a PEFT-layout adapter read and written
with a tiny safetensors parser (struct + json, no safetensors module), values
rounded and merged with PyTorch.

  peft_ref.py read ADAPTER_DIR EXPECT_JSON OUT_JSON
      Parse ADAPTER_DIR/adapter_model.safetensors, adapter_config.json and
      value_head.safetensors; check them against EXPECT_JSON (written by the
      Go test: dtype, config, in-model tensors with their float32 values, base
      weights to merge, value head); write the merged weights
      W + scale * B @ A (float64 in torch) to OUT_JSON.
  peft_ref.py write ADAPTER_DIR DTYPE DEFAULT
      Write an adapter as PEFT would (PEFT 0.13-style adapter_config.json with
      keys lathe ignores), tensor names with ".default" when DEFAULT is 1,
      DTYPE F32/BF16/F16, plus ADAPTER_DIR/expect.json with the values as
      stored (rounded by torch).

Exits non-zero with a message on any mismatch.
"""
import json
import math
import os
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
PREFIX = "base_model.model."


def fail(msg):
    sys.stderr.write("peft_ref: " + msg + "\n")
    sys.exit(1)


def parse_safetensors(path):
    """Returns (metadata, {name: (dtype, shape, list of float)})."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    meta = header.pop("__metadata__", None)
    out = {}
    spans = []
    for name, info in header.items():
        dtype, shape = info["dtype"], info["shape"]
        begin, end = info["data_offsets"]
        spans.append((begin, end))
        count = math.prod(shape)
        buf = data[begin:end]
        if dtype == "F32":
            if len(buf) != 4 * count:
                fail("%s: %s: %d bytes for shape %s" % (path, name, len(buf), shape))
            vals = list(struct.unpack("<%df" % count, buf))
        elif dtype == "F16":
            if len(buf) != 2 * count:
                fail("%s: %s: %d bytes for shape %s" % (path, name, len(buf), shape))
            vals = list(struct.unpack("<%de" % count, buf))
        elif dtype == "BF16":
            if len(buf) != 2 * count:
                fail("%s: %s: %d bytes for shape %s" % (path, name, len(buf), shape))
            halves = struct.unpack("<%dH" % count, buf)
            vals = [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
        else:
            fail("%s: %s: unexpected dtype %s" % (path, name, dtype))
        out[name] = (dtype, shape, vals)
    spans.sort()
    pos = 0
    for b, e in spans:
        if b != pos:
            fail("%s: data not contiguous at %d" % (path, b))
        pos = e
    if pos != len(data):
        fail("%s: %d data bytes, tensors cover %d" % (path, len(data), pos))
    return meta, out


def write_safetensors(path, tensors, metadata):
    """tensors: {name: torch tensor}; PEFT/safetensors layout, sorted names."""
    header = {"__metadata__": metadata}
    blobs = []
    pos = 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dtype = {v: k for k, v in DTYPES.items()}[t.dtype]
        if t.dtype == torch.float32:
            b = t.numpy().tobytes()
        else:
            b = t.view(torch.int16).numpy().astype("<i2").tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [pos, pos + len(b)]}
        blobs.append(b)
        pos += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def rounded(values, dtype):
    return torch.tensor(values, dtype=torch.float32).to(DTYPES[dtype]).to(torch.float32).tolist()


# The PEFT LoraConfig fields lathe writes, with their fixed values.
FIXED = {
    "peft_type": "LORA",
    "task_type": "CAUSAL_LM",
    "bias": "none",
    "fan_in_fan_out": False,
    "inference_mode": True,
    "init_lora_weights": True,
    "modules_to_save": None,
    "revision": None,
    "use_dora": False,
    "layers_to_transform": None,
    "rank_pattern": {},
    "alpha_pattern": {},
}


def cmd_read(adapter_dir, expect_path, out_path):
    with open(expect_path) as f:
        exp = json.load(f)
    dtype = exp["dtype"]

    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        text = f.read()
    cfg = json.loads(text)
    # PEFT writes json.dumps(config, indent=2, sort_keys=True).
    if text.rstrip("\n") != json.dumps(cfg, indent=2, sort_keys=True):
        fail("adapter_config.json is not laid out as PEFT writes it:\n" + text)
    want = dict(FIXED)
    want.update(exp["config"])
    if cfg != want:
        extra = {k: cfg.get(k) for k in set(cfg) | set(want) if cfg.get(k, "<missing>") != want.get(k, "<missing>")}
        fail("adapter_config.json differs from PEFT's fields: %s" % extra)

    meta, tensors = parse_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    if meta != {"format": "pt"}:
        fail("metadata %r, want {'format': 'pt'}" % (meta,))
    want_names = {PREFIX + k for k in exp["tensors"]}
    if set(tensors) != want_names:
        fail("tensor names %s, want %s" % (sorted(tensors), sorted(want_names)))
    for name, t in exp["tensors"].items():
        dt, shape, vals = tensors[PREFIX + name]
        if dt != dtype:
            fail("%s: dtype %s, want %s" % (name, dt, dtype))
        if shape != t["shape"]:
            fail("%s: shape %s, want %s" % (name, shape, t["shape"]))
        want_vals = rounded(t["values"], dtype)
        for i, (g, w) in enumerate(zip(vals, want_vals)):
            if g != w:
                fail("%s[%d] = %r, want %r (torch's %s rounding of %r)" % (name, i, g, w, dtype, t["values"][i]))

    merged = {}
    scale = exp["scale"]
    for module, base in exp["merge"].items():
        _, (r, n_in), a = tensors[PREFIX + module + ".lora_A.weight"]
        _, (n_out, r2), b = tensors[PREFIX + module + ".lora_B.weight"]
        w = torch.tensor(base, dtype=torch.float32).to(torch.float64).reshape(n_out, n_in)
        A = torch.tensor(a, dtype=torch.float64).reshape(r, n_in)
        B = torch.tensor(b, dtype=torch.float64).reshape(n_out, r2)
        merged[module] = (w + scale * (B @ A)).to(torch.float32).reshape(-1).tolist()

        # The merged weight and the unmerged LoRA forward agree:
        # x W'^T == x W^T + scale (x A^T) B^T.
        x = torch.linspace(-1, 1, 3 * n_in, dtype=torch.float64).reshape(3, n_in)
        y1 = x @ (w + scale * (B @ A)).T
        y2 = x @ w.T + scale * (x @ A.T) @ B.T
        if not torch.allclose(y1, y2, rtol=1e-12, atol=1e-12):
            fail("%s: merged and unmerged forward differ" % module)

    vh = exp.get("value_head")
    if vh is not None:
        meta, t = parse_safetensors(os.path.join(adapter_dir, "value_head.safetensors"))
        if set(t) != {"v_head.summary.weight", "v_head.summary.bias"}:
            fail("value head tensors %s" % sorted(t))
        dt, shape, vals = t["v_head.summary.weight"]
        if dt != "F32" or shape != [1, len(vh["w"])] or vals != rounded(vh["w"], "F32"):
            fail("v_head.summary.weight: %s %s %s" % (dt, shape, vals))
        dt, shape, vals = t["v_head.summary.bias"]
        if dt != "F32" or shape != [1] or vals != rounded([vh["bias"]], "F32"):
            fail("v_head.summary.bias: %s %s %s" % (dt, shape, vals))
        # LLaMA Factory's value head is nn.Linear(hidden, 1): check it loads.
        head = torch.nn.Linear(len(vh["w"]), 1)
        head.load_state_dict({
            "weight": torch.tensor(t["v_head.summary.weight"][2]).reshape(1, -1),
            "bias": torch.tensor(t["v_head.summary.bias"][2]),
        })

    with open(out_path, "w") as f:
        json.dump({"merged": merged}, f)


def cmd_write(adapter_dir, dtype, default):
    os.makedirs(adapter_dir, exist_ok=True)
    r, hidden, kv, layers = 4, 8, 4, 2
    g = torch.Generator().manual_seed(1234)
    infix = ".default" if default == "1" else ""
    tensors, expect = {}, {}
    for layer in range(layers):
        for kind, out in (("q_proj", hidden), ("v_proj", kv)):
            module = "model.layers.%d.self_attn.%s" % (layer, kind)
            for part, shape in (("lora_A", (r, hidden)), ("lora_B", (out, r))):
                t = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1).to(DTYPES[dtype])
                tensors[PREFIX + module + "." + part + infix + ".weight"] = t
                expect[module + "." + part + ".weight"] = {
                    "shape": list(shape),
                    "values": t.to(torch.float32).reshape(-1).tolist(),
                }
    write_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"), tensors, {"format": "pt"})
    # adapter_config.json as PEFT 0.13 writes it, including keys lathe ignores.
    cfg = {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": "Qwen/Qwen2.5-0.5B",
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layer_replication": None,
        "layers_pattern": None,
        "layers_to_transform": None,
        "loftq_config": {},
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": r,
        "rank_pattern": {},
        "revision": None,
        "target_modules": ["v_proj", "q_proj"],
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": True,
    }
    with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True))
    with open(os.path.join(adapter_dir, "expect.json"), "w") as f:
        json.dump({"dtype": dtype, "tensors": expect}, f, indent=1, sort_keys=True)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "read":
        cmd_read(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "write":
        if sys.argv[3] not in DTYPES:
            fail("dtype %s" % sys.argv[3])
        cmd_write(*sys.argv[2:])
    else:
        fail("usage: peft_ref.py read DIR EXPECT OUT | write DIR DTYPE DEFAULT")


if __name__ == "__main__":
    main()
