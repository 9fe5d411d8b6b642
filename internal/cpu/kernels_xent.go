package cpu

import (
	"fmt"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// CrossEntropy runs the fused LM-head cross-entropy (CrossEntropy on the
// buffers' host memory). dx the zero Buffer means losses only; then dw is
// ignored.
func (be *Backend) CrossEntropy(losses, dx, dw, x, w, targets, workspace tensor.Buffer, c tensor.CrossEntropy) {
	if c.N < 0 || c.C <= 0 || c.V <= 0 || c.ChunkRows <= 0 {
		panic(fmt.Sprintf("cpu.CrossEntropy: bad shape %+v", c))
	}
	var dxs, dws, rs []float32
	if !dx.IsNil() {
		dxs = f32("cpu.CrossEntropy dx", dx, c.N*c.C)
		if !dw.IsNil() {
			dws = f32("cpu.CrossEntropy dw", dw, c.V*c.C)
		}
		if !c.RowScale.IsNil() {
			rs = f32("cpu.CrossEntropy rowScale", c.RowScale, c.N)
		}
	}
	crossEntropy(f32("cpu.CrossEntropy losses", losses, c.N), dxs, dws,
		f32("cpu.CrossEntropy x", x, c.N*c.C), f32("cpu.CrossEntropy w", w, c.V*c.C),
		i32("cpu.CrossEntropy targets", targets, c.N), c.N, c.C, c.V, c.GradScale, rs, c.SoftCap,
		f32("cpu.CrossEntropy workspace", workspace, c.ChunkRows*c.V), c.ChunkRows)
}
