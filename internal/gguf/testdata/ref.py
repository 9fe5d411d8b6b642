"""Reference for internal/gguf, run by peer_test.go.

Reads a float32 matrix and writes what llama.cpp's tools make of it:

  permuted.f32  convert_hf_to_gguf.py's LlamaModel.permute of the rows
                (reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2))
  q8_0.bin      ggml's quantize_row_q8_0_ref, vectorised in numpy
  q4_0.bin      ggml's quantize_row_q4_0_ref, vectorised in numpy

usage: ref.py DIR ROWS COLS N_HEAD   (input DIR/in.f32, row-major)
"""
import sys

import numpy as np


def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def q8_0(x):
    b = x.reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    v = (b * inv[:, None]).astype(np.float32).astype(np.float64)
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)  # roundf: half away from zero
    out = np.empty((len(b), 34), dtype=np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def q4_0(x):
    b = x.reshape(-1, 32)
    idx = np.argmax(np.abs(b), axis=1)  # first index of the largest magnitude
    m = b[np.arange(len(b)), idx]
    d = (m / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    v = ((b * inv[:, None]).astype(np.float32) + np.float32(8.5)).astype(np.float32)
    q = np.minimum(np.trunc(v).astype(np.int32), 15).astype(np.uint8)
    out = np.empty((len(b), 18), dtype=np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def main():
    d, rows, cols, n_head = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    w = np.fromfile(d + "/in.f32", dtype="<f4").reshape(rows, cols)
    permute(w, n_head).astype("<f4").tofile(d + "/permuted.f32")
    with open(d + "/q8_0.bin", "wb") as f:
        f.write(q8_0(w.ravel()))
    with open(d + "/q4_0.bin", "wb") as f:
        f.write(q4_0(w.ravel()))


if __name__ == "__main__":
    main()
