"""PyTorch peer for the export stage's Hugging Face output.

usage: hf_ref.py SRC_MODEL_DIR EXPORT_DIR [ADAPTER_DIR]

Reads the safetensors files with numpy (its own parser, no safetensors
package), checks model.safetensors.index.json when there is one (every
tensor in the shard it names, total_size the sum of the tensors' bytes),
and compares every exported tensor bit for bit with the source tensor
converted by torch to the exported dtype. With an adapter, the source
tensor of each adapted module is first merged the PEFT way, W + scale * B @ A
in float64 (scale = lora_alpha / r, or / sqrt(r) with use_rslora), and
compared with a tolerance of one float32 rounding.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}
TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_file(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=NP[info["dtype"]]).reshape(info["shape"])
        out[name] = (info["dtype"], arr, e - b)
    return out


def read_dir(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(idx):
        return read_file(os.path.join(d, "model.safetensors"))
    with open(idx) as f:
        index = json.load(f)
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        for name, t in read_file(os.path.join(d, shard)).items():
            assert index["weight_map"].get(name) == shard, f"{name} is in {shard}, the index says {index['weight_map'].get(name)}"
            out[name] = t
    assert set(out) == set(index["weight_map"]), "index and shards disagree on the tensor names"
    total = sum(t[2] for t in out.values())
    assert index["metadata"]["total_size"] == total, f"total_size {index['metadata']['total_size']}, tensors {total}"
    return out


def as_torch(dtype, arr):
    if dtype == "BF16":
        return torch.from_numpy(arr.astype(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(arr.copy())


def main():
    src, out = read_dir(sys.argv[1]), read_dir(sys.argv[2])
    assert set(src) == set(out), f"tensor names differ: {set(src) ^ set(out)}"
    merged = {}
    if len(sys.argv) > 3:
        with open(os.path.join(sys.argv[3], "adapter_config.json")) as f:
            cfg = json.load(f)
        r = cfg["r"]
        scale = cfg["lora_alpha"] / (math.sqrt(r) if cfg.get("use_rslora") else r)
        ad = read_file(os.path.join(sys.argv[3], "adapter_model.safetensors"))
        for name in ad:
            if name.endswith(".lora_A.weight"):
                module = name[len("base_model.model."):-len(".lora_A.weight")]
                a = as_torch(*ad[name][:2]).double()
                b = as_torch(*ad[name.replace("lora_A", "lora_B")][:2]).double()
                merged[module + ".weight"] = (b @ a) * scale
        assert merged, "the adapter has no LoRA pairs"
    for name, (sdt, sarr, _) in sorted(src.items()):
        odt, oarr, _ = out[name]
        s = as_torch(sdt, sarr)
        if name in merged:
            assert odt == "F32", "adapter checks expect an f32 export"
            want = (s.double() + merged[name]).float()
            got = as_torch(odt, oarr).float()
            err = (got - want).abs().max().item()
            tol = want.abs().max().item() * 2 ** -23
            assert err <= tol, f"{name}: merged weight off by {err} (tolerance {tol})"
            continue
        want = s.to(TORCH[odt])
        got = as_torch(odt, oarr)
        if odt == "F32":
            ok = torch.equal(got.view(torch.int32), want.view(torch.int32))
        else:
            ok = torch.equal(got.view(torch.int16), want.view(torch.int16))
        assert ok, f"{name}: {sdt} -> {odt} differs from torch's conversion"
    print(f"ok: {len(out)} tensors, {len(merged)} merged")


if __name__ == "__main__":
    main()
