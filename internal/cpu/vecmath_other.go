//go:build !amd64 || purego

package cpu

// vecAVX512 is false off amd64: the row kernels run their Go definitions.
var vecAVX512 = false

func expSubRowVec(row []float32, sub float32) (float64, int) { return 0, 0 }

func swigluFwd(out, gate, up []float32) { swigluFwdGo(out, gate, up) }

func swigluBwd(dgate, dup, dout, gate, up []float32) { swigluBwdGo(dgate, dup, dout, gate, up) }

func adamw(p, g, m, v []float32, a *adamwArgs) { adamwGo(p, g, m, v, a) }

func scaleRow(x []float32, k float32) { scaleRowGo(x, k) }

func rowMaxVec(row []float32) (float32, bool) { return 0, false }
