package cpu

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// memory is one host allocation. Its bytes live in a []uint64 so that every
// element type is naturally aligned.
type memory struct {
	words []uint64
	size  int
}

func (m *memory) Size() int { return m.size }

// Backend is the CPU implementation of tensor.Backend. The zero value is not
// usable; call New. Like every tensor.Backend, one Backend serves one
// goroutine at a time; separate Backends may run concurrently.
type Backend struct {
	pt parTask // par's job, reused per call
	k  kargs   // argument blocks of the parallel kernels, reused per call

	normPartials []float64 // GlobalNorm: one partial sum per fixed chunk
	normChunks   []normChunk
	nf4Scratch   []float32           // QuantizeNF4: true absmax per block
	ropeTab      ropeTable           // RoPE: cached cos/sin per position
	widened      [numSlots][]float32 // float32 values of BF16 operands and outputs (kernels_convert.go)
}

// New returns a CPU backend.
func New() *Backend { return &Backend{} }

// Name returns "cpu".
func (be *Backend) Name() string { return "cpu" }

// Alloc returns n zeroed elements of dt in host memory.
func (be *Backend) Alloc(dt tensor.DType, n int) (tensor.Buffer, error) {
	if !dt.Valid() {
		return tensor.Buffer{}, fmt.Errorf("cpu: alloc: invalid dtype %v", dt)
	}
	if n < 0 || (dt == tensor.NF4 && n%2 != 0) {
		return tensor.Buffer{}, fmt.Errorf("cpu: alloc: bad element count %d for %v", n, dt)
	}
	size := dt.Bytes(n)
	m := &memory{words: make([]uint64, (size+7)/8), size: size}
	return tensor.NewBuffer(m, dt, n), nil
}

// Free drops the allocation so the garbage collector can reclaim it; later
// use of any view of it panics.
func (be *Backend) Free(b tensor.Buffer) {
	if m, ok := b.Mem().(*memory); ok {
		m.words, m.size = nil, 0
	}
}

// Upload copies host bytes into dst.
func (be *Backend) Upload(dst tensor.Buffer, src []byte) error {
	d, err := hostBytes(dst)
	if err != nil {
		return fmt.Errorf("cpu: upload: %w", err)
	}
	if len(src) != len(d) {
		return fmt.Errorf("cpu: upload: %d bytes into %v (%d bytes)", len(src), dst, len(d))
	}
	copy(d, src)
	return nil
}

// Download copies src's bytes to the host.
func (be *Backend) Download(dst []byte, src tensor.Buffer) error {
	s, err := hostBytes(src)
	if err != nil {
		return fmt.Errorf("cpu: download: %w", err)
	}
	if len(dst) != len(s) {
		return fmt.Errorf("cpu: download: %v (%d bytes) into %d bytes", src, len(s), len(dst))
	}
	copy(dst, s)
	return nil
}

// Sync returns nil: CPU kernels complete before their methods return.
func (be *Backend) Sync() error { return nil }

// hostBytes returns the bytes of b.
func hostBytes(b tensor.Buffer) ([]byte, error) {
	m, ok := b.Mem().(*memory)
	if !ok {
		return nil, fmt.Errorf("%v is not a cpu buffer", b)
	}
	n := b.Bytes()
	if b.Offset()+n > m.size {
		return nil, fmt.Errorf("%v lies outside its %d-byte allocation (freed?)", b, m.size)
	}
	if n == 0 {
		return nil, nil
	}
	base := unsafe.Slice((*byte)(unsafe.Pointer(&m.words[0])), m.size)
	return base[b.Offset() : b.Offset()+n : b.Offset()+n], nil
}

// view returns the first n elements of b as a []T after checking the dtype;
// what names the kernel argument in panics.
func view[T float32 | int32 | uint16 | uint8](what string, b tensor.Buffer, dt tensor.DType, n int) []T {
	tensor.Need(what, b, dt, n)
	raw, err := hostBytes(b)
	if err != nil {
		panic(fmt.Sprintf("%s: %v", what, err))
	}
	if n == 0 {
		return nil
	}
	var z T
	if b.Offset()%int(unsafe.Sizeof(z)) != 0 {
		panic(fmt.Sprintf("%s: %v is misaligned for its dtype", what, b))
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&raw[0])), n)
}

func f32(what string, b tensor.Buffer, n int) []float32 {
	return view[float32](what, b, tensor.F32, n)
}

func i32(what string, b tensor.Buffer, n int) []int32 {
	return view[int32](what, b, tensor.I32, n)
}

// task is one parallel kernel: run computes the outputs of items [lo, hi).
type task interface{ run(lo, hi int) }

// parTask adapts a task split into contiguous ranges to the worker pool
// (pool.go), whose idle members spin briefly before parking: the
// elementwise kernels are short, and waking a parked thread costs more
// than many of them.
type parTask struct {
	t       task
	workers int
	shares  shares
	group   taskGroup
}

func (p *parTask) runWorker(w int) { p.shares.run(w, p.workers, p.t) }

// par runs t over [0, n) on up to GOMAXPROCS workers, each with a
// contiguous share of at least grain items cut into a few chunks (see
// shares), and returns when all are done. Ranges are disjoint; a task must
// write only the outputs of its own items, and any reduction it does must
// not depend on where the ranges fall. par allocates nothing.
func (be *Backend) par(n, grain int, t task) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	w := min(runtime.GOMAXPROCS(0), (n+grain-1)/grain)
	if w <= 1 {
		t.run(0, n)
		return
	}
	be.pt.t, be.pt.workers = t, w
	be.pt.shares.reset(n, w)
	runTask(w, &be.pt, &be.pt.group)
	be.pt.t = nil
}
