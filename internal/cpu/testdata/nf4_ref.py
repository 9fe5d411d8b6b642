#!/usr/bin/python3
"""PyTorch reference for lathe's NF4 (QLoRA) quantisation, written from the
QLoRA paper (Dettmers et al. 2023) and bitsandbytes' documented scheme:

  * the 16 NormalFloat-4 code values are the published table (they are
    rebuilt here from normal quantiles and checked against it);
  * values are quantised in blocks of 64: absmax per block, each value gets
    the code nearest to x / absmax (ties go to the lower code, as a
    comparison with the midpoints between codes does);
  * double quantisation: the absmax values minus their mean (the offset)
    are quantised to int8 in groups of 256 with scale = the group's largest
    |absmax - offset| (q = round(127·(a - offset)/scale), half away from
    zero); values are then coded against the DEQUANTISED absmax.

Reads little-endian float32 values from stdin; writes JSON with codes,
absmax codes, scales, offset and the dequantised values.
"""
import json
import math
import struct
import sys

import torch

PUBLISHED = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


def derived_codes():
    # QLoRA's create_normal_map(offset=0.9677083): 8 positive and 7
    # negative normal quantiles plus zero, normalised by the largest.
    normal = torch.distributions.Normal(0.0, 1.0)
    off = 0.9677083
    pos = normal.icdf(torch.linspace(off, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -normal.icdf(torch.linspace(off, 0.5, 8, dtype=torch.float64)[:-1])
    v = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).sort().values
    return v / v.max()


def main():
    raw = sys.stdin.buffer.read()
    x = torch.tensor(struct.unpack("<%df" % (len(raw) // 4), raw), dtype=torch.float32)
    d = derived_codes()
    if (d - torch.tensor(PUBLISHED, dtype=torch.float64)).abs().max() > 1e-6:
        raise SystemExit("derived NF4 codes differ from the published table")
    codes = torch.tensor(PUBLISHED, dtype=torch.float32)
    blocks = x.reshape(-1, 64)
    absmax = blocks.abs().max(dim=1).values  # float32
    offset = torch.tensor(float(absmax.double().sum() / absmax.numel()), dtype=torch.float32)
    nb = absmax.numel()
    absq = torch.zeros(nb, dtype=torch.int64)
    scale2 = []
    for g in range(0, nb, 256):
        a = absmax[g:g + 256]
        centred = a - offset  # float32
        s = centred.abs().max()
        scale2.append(float(s))
        if float(s) > 0:
            r = 127.0 * centred.double() / float(s)
            q = torch.sign(r) * torch.floor(r.abs() + 0.5)
            absq[g:g + 256] = q.clamp(-127, 127).to(torch.int64)
    s2 = torch.tensor(scale2, dtype=torch.float32)
    grp = torch.arange(nb) // 256
    dq_abs = absq.to(torch.float32) * (s2[grp] / 127) + offset  # float32, as lathe
    inv = torch.where(dq_abs != 0, 1 / dq_abs, torch.zeros_like(dq_abs))
    v = blocks * inv[:, None]  # float32
    mids = (codes[:-1] + codes[1:]) / 2
    code = (v[..., None] > mids).sum(-1)  # first midpoint not below v
    deq = codes[code] * dq_abs[:, None]
    json.dump({
        "codes": code.reshape(-1).tolist(),
        "absmax_q": absq.tolist(),
        "scale2": [float(s) for s in s2],
        "offset": float(offset),
        "dequant": deq.reshape(-1).tolist(),
    }, sys.stdout)


if __name__ == "__main__":
    main()
