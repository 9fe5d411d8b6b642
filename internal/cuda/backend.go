//go:build cuda

package cuda

import (
	"embed"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/lathe-ml/lathe/internal/tensor"
)

//go:embed kernels/*.ptx
var ptxFS embed.FS

// The device error word's bits (common.cuh).
const (
	errEmbedID   = 1
	errTarget    = 2
	errDecodeLen = 4
)

// devMem is one device allocation.
type devMem struct {
	be    *Backend
	ptr   cu.DevicePtr
	size  int
	freed bool
}

func (m *devMem) Size() int { return m.size }

// Options configure New.
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// F32Compute is how Gemm multiplies F32 matrices (default ComputeF32,
	// exact float32).
	F32Compute GemmCompute
}

// Backend is tensor.Backend on one CUDA device: buffers in device memory,
// kernels issued in order on one stream (see the package comment). Like
// every tensor.Backend it serves one goroutine at a time.
type Backend struct {
	opts   Options
	name   string
	dev    cu.Device
	ctx    cu.CUContext
	stream cu.Stream
	blas   *cublasHandle
	mods   []cu.Module
	fns    map[string]cu.Function
	// smemSet records the dynamic shared memory each function was allowed
	// beyond the default 48 KiB.
	smemSet    map[string]int
	smemOptin  int
	errWord    cu.DevicePtr
	scratch    cu.DevicePtr
	scratchLen int
	err        error // the first deferred (asynchronous) error, reported by Sync

	args   [24]uint64
	params [24]unsafe.Pointer
}

var _ tensor.Backend = (*Backend)(nil)

// enter makes the backend's context current on a locked OS thread (CUDA
// contexts are per thread; goroutines move between threads); the returned
// function undoes the lock.
func (be *Backend) enter() func() {
	runtime.LockOSThread()
	if err := cu.SetCurrentContext(be.ctx); err != nil && be.err == nil {
		be.err = fmt.Errorf("cuda: set context: %w", err)
	}
	return runtime.UnlockOSThread
}

// New opens device o.Device: retains its primary context, creates a stream
// and a cuBLAS handle, and loads the embedded PTX (JIT-compiled by the
// driver for the device on first load).
func New(o Options) (*Backend, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("cuda: count devices: %w", err)
	}
	if o.Device < 0 || o.Device >= n {
		return nil, fmt.Errorf("cuda: device %d does not exist (%d devices)", o.Device, n)
	}
	be := &Backend{opts: o, fns: map[string]cu.Function{}, smemSet: map[string]int{}}
	if be.dev, err = cu.GetDevice(o.Device); err != nil {
		return nil, fmt.Errorf("cuda: device %d: %w", o.Device, err)
	}
	if be.ctx, err = be.dev.RetainPrimaryCtx(); err != nil {
		return nil, fmt.Errorf("cuda: device %d: primary context: %w", o.Device, err)
	}
	fail := func(err error) (*Backend, error) {
		be.Close()
		return nil, err
	}
	if err := cu.SetCurrentContext(be.ctx); err != nil {
		return fail(fmt.Errorf("cuda: set context: %w", err))
	}
	major, _ := be.dev.Attribute(cu.ComputeCapabilityMajor)
	if major < 8 {
		minor, _ := be.dev.Attribute(cu.ComputeCapabilityMinor)
		return fail(fmt.Errorf("cuda: device %d has compute capability %d.%d; the kernels need 8.0 (Ampere) or newer", o.Device, major, minor))
	}
	be.name = fmt.Sprintf("cuda:%d", o.Device)
	be.smemOptin = smemOptin(o.Device)
	if be.stream, err = cu.MakeStream(cu.DefaultStream); err != nil {
		return fail(fmt.Errorf("cuda: create stream: %w", err))
	}
	if be.blas, err = newCublas(be.stream, o.F32Compute == ComputeF32); err != nil {
		return fail(err)
	}
	if be.errWord, err = cu.MemAlloc(4); err != nil {
		return fail(fmt.Errorf("cuda: alloc error word: %w", err))
	}
	if err := cu.MemsetD32(be.errWord, 0, 1); err != nil {
		return fail(fmt.Errorf("cuda: clear error word: %w", err))
	}
	files, err := ptxFS.ReadDir("kernels")
	if err != nil {
		return fail(fmt.Errorf("cuda: embedded kernels: %w", err))
	}
	for _, f := range files {
		src, err := ptxFS.ReadFile("kernels/" + f.Name())
		if err != nil {
			return fail(fmt.Errorf("cuda: embedded kernels: %w", err))
		}
		mod, err := cu.LoadData(string(src))
		if err != nil {
			return fail(fmt.Errorf("cuda: load %s (PTX JIT for the device): %w", f.Name(), err))
		}
		be.mods = append(be.mods, mod)
		for _, name := range entryPoints(string(src)) {
			fn, err := mod.Function(name)
			if err != nil {
				return fail(fmt.Errorf("cuda: %s: function %s: %w", f.Name(), name, err))
			}
			be.fns[name] = fn
		}
	}
	for _, name := range kernelNames {
		if _, ok := be.fns[name]; !ok {
			return fail(fmt.Errorf("cuda: the embedded PTX lacks kernel %s", name))
		}
	}
	return be, nil
}

// entryPoints lists the .entry names of a PTX module.
func entryPoints(ptx string) []string {
	var names []string
	for _, line := range strings.Split(ptx, "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, ".visible .entry "); ok {
			if i := strings.IndexByte(rest, '('); i > 0 {
				names = append(names, rest[:i])
			}
		}
	}
	return names
}

// kernelNames are the kernels the backend launches; New fails if the PTX
// lacks one.
var kernelNames = []string{
	"fill_f32", "add_f32", "mul_f32", "axpy_f32", "scale_f32", "add_bias_f32",
	"swiglu_fwd_f32", "swiglu_bwd_f32", "geglu_fwd_f32", "geglu_bwd_f32",
	"embed_fwd_f32", "embed_bwd_f32", "colsum_partial_f64", "colsum_final_f64",
	"adamw_f32", "sumsq_partial_f64", "sum_sqrt_f64", "clip_f32",
	"f32_to_bf16", "bf16_to_f32", "f32_to_f16", "f16_to_f32",
	"rmsnorm_fwd_f32", "rmsnorm_bwd_dx_f32", "rope_f32",
	"attn_fwd_d64", "attn_fwd_d128", "attn_fwd_d256", "attn_bwd_drow",
	"attn_bwd_dkdv_d64", "attn_bwd_dkdv_d128", "attn_bwd_dkdv_d256",
	"attn_bwd_dq_d64", "attn_bwd_dq_d128", "attn_bwd_dq_d256", "attn_decode",
	"xent_rows",
	"nf4_absmax", "sum_partial_f64", "mean_f64", "nf4_group", "nf4_codes_pack", "nf4_dequant",
}

// Close releases the device resources. The Backend is unusable afterwards.
func (be *Backend) Close() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if be.ctx == (cu.CUContext{}) {
		return
	}
	_ = cu.SetCurrentContext(be.ctx)
	_ = be.stream.Synchronize()
	be.blas.destroy()
	if be.scratch != 0 {
		_ = cu.MemFree(be.scratch)
		be.scratch = 0
	}
	if be.errWord != 0 {
		_ = cu.MemFree(be.errWord)
		be.errWord = 0
	}
	for _, m := range be.mods {
		_ = m.Unload()
	}
	be.mods = nil
	if rawStream(be.stream) != 0 {
		_ = be.stream.Destroy()
	}
	_ = be.dev.ReleasePrimaryCtx()
	be.ctx = cu.CUContext{}
}

// Name returns "cuda:N".
func (be *Backend) Name() string { return be.name }

// DeviceInfo describes the device for reports (name, compute capability,
// SMs, clock, memory, cuBLAS).
type DeviceInfo struct {
	Name               string
	Major, Minor       int
	SMs                int
	ClockKHz           int
	MemBytes           int64
	CublasVersion      int
	CublasLibrary      string
	DriverVersion      int
	SharedMemOptinByte int
}

// Info returns the device's description.
func (be *Backend) Info() DeviceInfo {
	defer be.enter()()
	var d DeviceInfo
	d.Name, _ = be.dev.Name()
	d.Major, _ = be.dev.Attribute(cu.ComputeCapabilityMajor)
	d.Minor, _ = be.dev.Attribute(cu.ComputeCapabilityMinor)
	d.SMs, _ = be.dev.Attribute(cu.MultiprocessorCount)
	d.ClockKHz, _ = be.dev.Attribute(cu.ClockRate)
	d.MemBytes, _ = be.dev.TotalMem()
	d.CublasVersion, d.CublasLibrary = be.blas.version()
	d.DriverVersion = cu.Version()
	d.SharedMemOptinByte = be.smemOptin
	return d
}

// Alloc returns n zeroed elements of dt in device memory.
func (be *Backend) Alloc(dt tensor.DType, n int) (tensor.Buffer, error) {
	if !dt.Valid() {
		return tensor.Buffer{}, fmt.Errorf("cuda: alloc: invalid dtype %v", dt)
	}
	if n < 0 || (dt == tensor.NF4 && n%2 != 0) {
		return tensor.Buffer{}, fmt.Errorf("cuda: alloc: bad element count %d for %v", n, dt)
	}
	size := dt.Bytes(n)
	m := &devMem{be: be, size: size}
	if size > 0 {
		defer be.enter()()
		p, err := cu.MemAlloc(int64(size))
		if err != nil {
			return tensor.Buffer{}, fmt.Errorf("cuda: alloc %d bytes (%v[%d]): %w", size, dt, n, err)
		}
		m.ptr = p
		if err := cu.MemsetD8Async(p, 0, int64(size), be.stream); err != nil {
			_ = cu.MemFree(p)
			return tensor.Buffer{}, fmt.Errorf("cuda: zero %d bytes: %w", size, err)
		}
	}
	return tensor.NewBuffer(m, dt, n), nil
}

// Free waits for the stream and releases the allocation behind b.
func (be *Backend) Free(b tensor.Buffer) {
	m, ok := b.Mem().(*devMem)
	if !ok || m.be != be || m.freed {
		return
	}
	m.freed = true
	if m.ptr == 0 {
		return
	}
	defer be.enter()()
	if err := be.stream.Synchronize(); err != nil && be.err == nil {
		be.err = fmt.Errorf("cuda: free: %w", err)
	}
	if err := cu.MemFree(m.ptr); err != nil && be.err == nil {
		be.err = fmt.Errorf("cuda: free: %w", err)
	}
	m.ptr = 0
}

// mem returns b's allocation after checking that it is this backend's and
// live.
func (be *Backend) mem(what string, b tensor.Buffer) (*devMem, error) {
	m, ok := b.Mem().(*devMem)
	switch {
	case !ok:
		return nil, fmt.Errorf("%s: %v is not a cuda buffer", what, b)
	case m.be != be:
		return nil, fmt.Errorf("%s: %v belongs to another cuda backend", what, b)
	case m.freed:
		return nil, fmt.Errorf("%s: %v was freed", what, b)
	case b.Offset()+b.Bytes() > m.size:
		return nil, fmt.Errorf("%s: %v lies outside its %d-byte allocation", what, b, m.size)
	}
	return m, nil
}

// Upload copies host bytes into dst and waits for the copy (so src may be
// reused at once).
func (be *Backend) Upload(dst tensor.Buffer, src []byte) error {
	m, err := be.mem("cuda: upload", dst)
	if err != nil {
		return err
	}
	if len(src) != dst.Bytes() {
		return fmt.Errorf("cuda: upload: %d bytes into %v (%d bytes)", len(src), dst, dst.Bytes())
	}
	if len(src) == 0 {
		return nil
	}
	defer be.enter()()
	if err := cu.MemcpyHtoDAsync(m.ptr+cu.DevicePtr(dst.Offset()), unsafe.Pointer(&src[0]), int64(len(src)), be.stream); err != nil {
		return fmt.Errorf("cuda: upload %d bytes: %w", len(src), err)
	}
	if err := be.stream.Synchronize(); err != nil {
		return fmt.Errorf("cuda: upload %d bytes: %w", len(src), err)
	}
	return nil
}

// Download copies src's bytes to the host after the kernels issued before
// it have finished. It reports a deferred kernel error first.
func (be *Backend) Download(dst []byte, src tensor.Buffer) error {
	m, err := be.mem("cuda: download", src)
	if err != nil {
		return err
	}
	if len(dst) != src.Bytes() {
		return fmt.Errorf("cuda: download: %v (%d bytes) into %d bytes", src, src.Bytes(), len(dst))
	}
	if err := be.Sync(); err != nil {
		return err
	}
	if len(dst) == 0 {
		return nil
	}
	defer be.enter()()
	if err := cu.MemcpyDtoHAsync(unsafe.Pointer(&dst[0]), m.ptr+cu.DevicePtr(src.Offset()), int64(len(dst)), be.stream); err != nil {
		return fmt.Errorf("cuda: download %d bytes: %w", len(dst), err)
	}
	if err := be.stream.Synchronize(); err != nil {
		return fmt.Errorf("cuda: download %d bytes: %w", len(dst), err)
	}
	return nil
}

// Sync waits for every issued kernel and returns the first deferred error:
// a failed launch or cuBLAS call, or a data error a kernel reported through
// the error word (an embedding id or target out of range, a bad decode
// length). Reported errors are cleared.
func (be *Backend) Sync() error {
	defer be.enter()()
	err := be.err
	be.err = nil
	if e := be.stream.Synchronize(); e != nil && err == nil {
		err = fmt.Errorf("cuda: synchronize: %w", e)
	}
	var word uint32
	if e := cu.MemcpyDtoH(unsafe.Pointer(&word), be.errWord, 4); e != nil {
		if err == nil {
			err = fmt.Errorf("cuda: read error word: %w", e)
		}
		return err
	}
	if word != 0 {
		_ = cu.MemsetD32(be.errWord, 0, 1)
		var msgs []string
		if word&errEmbedID != 0 {
			msgs = append(msgs, "Embedding: a token id outside the embedding table (the forward zeroed its row, the backward skipped it)")
		}
		if word&errTarget != 0 {
			msgs = append(msgs, "CrossEntropy: a target >= the vocabulary size (its row was ignored)")
		}
		if word&errDecodeLen != 0 {
			msgs = append(msgs, "AttentionDecode: a length outside [1, MaxT] (its output was zeroed)")
		}
		if err == nil {
			err = errors.New("cuda: " + strings.Join(msgs, "; "))
		} else {
			err = fmt.Errorf("%w; cuda: %s", err, strings.Join(msgs, "; "))
		}
	}
	return err
}

// fail records the first deferred error.
func (be *Backend) fail(err error) {
	if err != nil && be.err == nil {
		be.err = err
	}
}

// ptr validates b (dtype dt, at least n elements, this backend's, live)
// and returns the device address of its first element; what names the
// kernel argument in panics, as the CPU backend's messages do.
func (be *Backend) ptr(what string, b tensor.Buffer, dt tensor.DType, n int) uint64 {
	tensor.Need(what, b, dt, n)
	m, err := be.mem(what, b)
	if err != nil {
		panic(err.Error())
	}
	return uint64(m.ptr) + uint64(b.Offset())
}

// optPtr is ptr for an optional argument: 0 for the zero Buffer.
func (be *Backend) optPtr(what string, b tensor.Buffer, dt tensor.DType, n int) uint64 {
	if b.IsNil() {
		return 0
	}
	return be.ptr(what, b, dt, n)
}

// Kernel argument encodings: every argument travels in an 8-byte slot
// (gorgonia.org/cu copies 8 bytes per parameter); a 4-byte int or float
// parameter reads the slot's low half (little-endian).
func i32a(v int) uint64 {
	if v < math.MinInt32 || v > math.MaxInt32 {
		panic(fmt.Sprintf("cuda: %d does not fit a 32-bit kernel argument", v))
	}
	return uint64(uint32(int32(v)))
}
func i64a(v int) uint64            { return uint64(int64(v)) }
func f32a(v float32) uint64        { return uint64(math.Float32bits(v)) }
func ptrArg(p cu.DevicePtr) uint64 { return uint64(p) }

// launch runs kernel name on the stream with a grid and block (x, y, z) and
// dynamic shared memory smem bytes. Failures are deferred to Sync.
func (be *Backend) launch(name string, grid, block [3]int, smem int, args ...uint64) {
	fn, ok := be.fns[name]
	if !ok {
		panic("cuda: no kernel " + name)
	}
	if len(args) > len(be.args) {
		panic(fmt.Sprintf("cuda: %s: %d arguments", name, len(args)))
	}
	for _, g := range grid {
		if g <= 0 {
			return // nothing to do
		}
	}
	defer be.enter()()
	if smem > 48<<10 && be.smemSet[name] < smem {
		if be.smemOptin > 0 && smem > be.smemOptin {
			panic(fmt.Sprintf("cuda: %s needs %d bytes of shared memory, the device allows %d", name, smem, be.smemOptin))
		}
		if err := setMaxDynamicSmem(fn, smem); err != nil {
			be.fail(fmt.Errorf("cuda: %s: %w", name, err))
			return
		}
		be.smemSet[name] = smem
	}
	for i, a := range args {
		be.args[i] = a
		be.params[i] = unsafe.Pointer(&be.args[i])
	}
	if err := fn.Launch(grid[0], grid[1], grid[2], block[0], block[1], block[2], smem, be.stream, be.params[:len(args)]); err != nil {
		be.fail(fmt.Errorf("cuda: launch %s: %w", name, err))
	}
}

// threads is the block size of the 1-D kernels.
const threads = 256

// launch1D runs a grid-stride kernel over n items.
func (be *Backend) launch1D(name string, n int, args ...uint64) {
	if n <= 0 {
		return
	}
	blocks := min((n+threads-1)/threads, 1<<16)
	be.launch(name, [3]int{blocks, 1, 1}, [3]int{threads, 1, 1}, 0, args...)
}

// scratchPtr returns device scratch of at least bytes bytes, valid until
// the next scratchPtr call. Kernels using it run in stream order, so one
// buffer serves every call; growing it waits for the stream first.
func (be *Backend) scratchPtr(bytes int) cu.DevicePtr {
	if bytes <= be.scratchLen {
		return be.scratch
	}
	defer be.enter()()
	if be.scratch != 0 {
		if err := be.stream.Synchronize(); err != nil {
			be.fail(fmt.Errorf("cuda: scratch: %w", err))
		}
		_ = cu.MemFree(be.scratch)
		be.scratch, be.scratchLen = 0, 0
	}
	size := max(bytes, 1<<20)
	p, err := cu.MemAlloc(int64(size))
	if err != nil {
		panic(fmt.Sprintf("cuda: scratch of %d bytes: %v", size, err))
	}
	be.scratch, be.scratchLen = p, size
	return p
}
