package cpu

import (
	"fmt"
	"runtime"

	"github.com/lathe-ml/lathe/internal/tensor"
)

func checkIDs(what string, ids []int32, vocab int) {
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			panic(fmt.Sprintf("%s: ids[%d] = %d outside vocabulary of %d", what, i, id, vocab))
		}
	}
}

type embedK struct {
	out, table []float32
	ids        []int32
	dim        int
}

func (k *embedK) run(lo, hi int) {
	d := k.dim
	for i := lo; i < hi; i++ {
		id := int(k.ids[i])
		copy(k.out[i*d:(i+1)*d], k.table[id*d:(id+1)*d])
	}
}

// EmbeddingForward gathers out[i,:] = table[ids[i],:].
func (be *Backend) EmbeddingForward(out, table, ids tensor.Buffer, n, dim int) {
	if dim <= 0 || table.Len()%dim != 0 {
		panic(fmt.Sprintf("cpu.EmbeddingForward: table of %d elements is not rows of %d", table.Len(), dim))
	}
	id := i32("cpu.EmbeddingForward ids", ids, n)
	checkIDs("cpu.EmbeddingForward", id, table.Len()/dim)
	be.k.embed = embedK{f32("cpu.EmbeddingForward out", out, n*dim),
		f32("cpu.EmbeddingForward table", table, table.Len()), id, dim}
	be.par(n, max(1, grainElems/dim), &be.k.embed)
	be.k.embed = embedK{}
}

// embedBwdK scatter-adds one chunk of width columns per item, visiting the
// tokens in order, so every table element sums its tokens in token order
// whatever the split.
type embedBwdK struct {
	dtable, dout []float32
	ids          []int32
	dim, width   int
}

func (k *embedBwdK) run(lo, hi int) {
	d := k.dim
	j0, j1 := lo*k.width, min(hi*k.width, d)
	for i, id := range k.ids {
		dst := k.dtable[int(id)*d+j0 : int(id)*d+j1]
		addRow(dst, dst, k.dout[i*d+j0:i*d+j1])
	}
}

// embedChunkWidth is the column chunk of the embedding backward: about
// four items per worker (a multiple of 16 columns, at most colChunk), so a
// narrow table (dim 64) still uses every worker. The sums do not depend
// on it.
func embedChunkWidth(dim int) int {
	w := ceilDiv(dim, 4*runtime.GOMAXPROCS(0))
	return min(colChunk, max(16, ceilDiv(w, 16)*16))
}

// EmbeddingBackward accumulates dtable[ids[i],:] += dout[i,:].
func (be *Backend) EmbeddingBackward(dtable, dout, ids tensor.Buffer, n, dim int) {
	if dim <= 0 || dtable.Len()%dim != 0 {
		panic(fmt.Sprintf("cpu.EmbeddingBackward: dtable of %d elements is not rows of %d", dtable.Len(), dim))
	}
	id := i32("cpu.EmbeddingBackward ids", ids, n)
	checkIDs("cpu.EmbeddingBackward", id, dtable.Len()/dim)
	w := embedChunkWidth(dim)
	be.k.embedBwd = embedBwdK{f32("cpu.EmbeddingBackward dtable", dtable, dtable.Len()),
		f32("cpu.EmbeddingBackward dout", dout, n*dim), id, dim, w}
	be.par(ceilDiv(dim, w), 1, &be.k.embedBwd)
	be.k.embedBwd = embedBwdK{}
}
