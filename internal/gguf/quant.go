package gguf

import (
	"encoding/binary"
	"fmt"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"math"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// Block layouts of the two quantised types, as in ggml-common.h.
const (
	qk8_0        = 32
	blockQ8_0    = 2 + qk8_0 // f16 scale d, then 32 int8 quants
	qk4_0        = 32
	blockQ4_0    = 2 + qk4_0/2 // f16 scale d, then 16 bytes of nibbles
	errNotBlocks = "gguf: %s needs a multiple of %d values, got %d"
)

// plainDType maps the unquantised types to safetensors' dtypes, whose
// encoders they share.
var plainDType = map[Type]safetensors.DType{F32: safetensors.F32, F16: safetensors.F16, BF16: safetensors.BF16}

// EncodeFloat32 encodes v as little-endian data of type t (F32, F16, BF16,
// Q8_0 or Q4_0). F16 and BF16 round to nearest even; Q8_0 and Q4_0 follow
// ggml's reference quantisers (quantize_row_q8_0_ref, quantize_row_q4_0_ref)
// bit for bit, and need len(v) to be a multiple of 32.
func EncodeFloat32(t Type, v []float32) ([]byte, error) {
	switch t {
	case F32, F16, BF16:
		return safetensors.EncodeFloat32(plainDType[t], v)
	case Q8_0:
		if len(v)%qk8_0 != 0 {
			return nil, fmt.Errorf(errNotBlocks, t, qk8_0, len(v))
		}
		out := make([]byte, len(v)/qk8_0*blockQ8_0)
		for b := 0; b < len(v)/qk8_0; b++ {
			quantizeQ8_0(out[b*blockQ8_0:(b+1)*blockQ8_0], v[b*qk8_0:(b+1)*qk8_0])
		}
		return out, nil
	case Q4_0:
		if len(v)%qk4_0 != 0 {
			return nil, fmt.Errorf(errNotBlocks, t, qk4_0, len(v))
		}
		out := make([]byte, len(v)/qk4_0*blockQ4_0)
		for b := 0; b < len(v)/qk4_0; b++ {
			quantizeQ4_0(out[b*blockQ4_0:(b+1)*blockQ4_0], v[b*qk4_0:(b+1)*qk4_0])
		}
		return out, nil
	}
	return nil, fmt.Errorf("gguf: cannot encode %s", t)
}

// quantizeQ8_0 is ggml's quantize_row_q8_0_ref for one block: d =
// max|x|/127, q = round(x/d) (half away from zero), d stored as f16.
func quantizeQ8_0(dst []byte, x []float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(dst, tensor.F16FromF32(d))
	for j, v := range x {
		dst[2+j] = byte(int8(math.Round(float64(float32(v * id)))))
	}
}

// quantizeQ4_0 is ggml's quantize_row_q4_0_ref for one block: d = m/-8
// where m is the value of largest magnitude (sign kept), q = min(15,
// trunc(x/d + 8.5)); byte j holds q[j] in its low nibble and q[j+16] in its
// high nibble.
func quantizeQ4_0(dst []byte, x []float32) {
	var amax, m float32
	for _, v := range x {
		if a := float32(math.Abs(float64(v))); amax < a {
			amax, m = a, v
		}
	}
	d := m / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(dst, tensor.F16FromF32(d))
	q := func(v float32) byte {
		// float32(...) forces rounding of the product before the add, as
		// the C reference does (no fused multiply-add).
		return byte(min(15, int8(float32(v*id)+8.5)))
	}
	for j := 0; j < qk4_0/2; j++ {
		dst[2+j] = q(x[j]) | q(x[j+qk4_0/2])<<4
	}
}

// DecodeFloat32 decodes little-endian data of type t (F32, F16, BF16, Q8_0
// or Q4_0) to float32, as ggml's dequantisers do.
func DecodeFloat32(t Type, raw []byte) ([]float32, error) {
	le := binary.LittleEndian
	if !t.writable() {
		return nil, fmt.Errorf("gguf: decoding %s is not supported (only F32, F16, BF16, Q8_0, Q4_0)", t)
	}
	if ts := t.TypeSize(); len(raw)%ts != 0 {
		return nil, fmt.Errorf("gguf: %d bytes is not a whole number of %s blocks of %d bytes", len(raw), t, ts)
	}
	switch t {
	case F32, F16, BF16:
		return safetensors.DecodeFloat32(plainDType[t], raw)
	case Q8_0:
		nb := len(raw) / blockQ8_0
		out := make([]float32, nb*qk8_0)
		for b := range nb {
			blk := raw[b*blockQ8_0:]
			d := tensor.F32FromF16(le.Uint16(blk))
			for j := range qk8_0 {
				out[b*qk8_0+j] = float32(int8(blk[2+j])) * d
			}
		}
		return out, nil
	default: // Q4_0
		nb := len(raw) / blockQ4_0
		out := make([]float32, nb*qk4_0)
		for b := range nb {
			blk := raw[b*blockQ4_0:]
			d := tensor.F32FromF16(le.Uint16(blk))
			o := out[b*qk4_0:]
			for j := range qk4_0 / 2 {
				q := blk[2+j]
				o[j] = float32(int(q&0x0f)-8) * d
				o[j+qk4_0/2] = float32(int(q>>4)-8) * d
			}
		}
		return out, nil
	}
}
