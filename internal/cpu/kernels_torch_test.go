package cpu

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// torchAttn is one attention case of the PyTorch request.
type torchAttn struct {
	B, T, Hq, Hkv, D int
	Scale            float32   `json:"scale"`
	SoftCap          float32   `json:"softcap"`
	Window           int       `json:"window"`
	ALiBi            bool      `json:"alibi"`
	Seg              []int32   `json:"seg"`
	Q                []float32 `json:"q"`
	K                []float32 `json:"k"`
	V                []float32 `json:"v"`
	Dout             []float32 `json:"dout"`
}

// torchXent is one cross-entropy case of the PyTorch request.
type torchXent struct {
	N, C, V   int
	SoftCap   float32   `json:"softcap"`
	GradScale float32   `json:"grad_scale"`
	X         []float32 `json:"x"`
	W         []float32 `json:"w"`
	Targets   []int32   `json:"targets"`
}

// TestKernelsAgainstPyTorch compares the model-family kernels with
// testdata/kernels_ref.py, which computes them in float64 the way Hugging
// Face's model code writes them: GeGLU (gelu approximate="tanh"),
// attention with Gemma 2's soft-cap, the masking_utils sliding window and
// Baichuan 2's ALiBi (slope·j, slopes from _get_interleave), and the
// cross-entropy with Gemma 2's final-logit soft-cap, all with gradients;
// and tensor.ALiBiSlopes bit for bit against _get_interleave.
func TestKernelsAgainstPyTorch(t *testing.T) {
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import torch").CombinedOutput(); err != nil {
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatalf("PyTorch is required (LATHE_REQUIRE_PEERS=1): %v\n%s", err, out)
		}
		t.Skipf("no PyTorch: %v", err)
	}
	r := rand.New(rand.NewPCG(31, 1))

	const nGeglu = 3000
	gate, up, gdout := randF32(r, nGeglu, 3), randF32(r, nGeglu, 1), randF32(r, nGeglu, 1)

	attn := []torchAttn{
		// Gemma 2: soft-cap and a sliding window, GQA, packed samples.
		{B: 2, T: 80, Hq: 4, Hkv: 2, D: 16, SoftCap: 5, Window: 20},
		// Baichuan 2 13B: ALiBi, heads not a power of two.
		{B: 2, T: 80, Hq: 5, Hkv: 5, D: 16, ALiBi: true},
		// Mistral: a window across a tile boundary.
		{B: 1, T: 130, Hq: 2, Hkv: 1, D: 8, Window: 64},
		// Everything at once.
		{B: 2, T: 90, Hq: 6, Hkv: 2, D: 8, SoftCap: 3, Window: 33, ALiBi: true},
	}
	for i := range attn {
		c := &attn[i]
		nq, nk := c.B*c.T*c.Hq*c.D, c.B*c.T*c.Hkv*c.D
		qs := float32(1)
		if c.SoftCap > 0 {
			qs = 3 // scores large enough for the cap to bend them
		}
		c.Q, c.K, c.V, c.Dout = randF32(r, nq, qs), randF32(r, nk, 1), randF32(r, nk, 1), randF32(r, nq, 1)
		c.Scale = float32(1 / math.Sqrt(float64(c.D)))
		if i != 1 && i != 2 {
			c.Seg = make([]int32, c.B*c.T)
			for j := range c.Seg {
				c.Seg[j] = int32(j % c.T / 37)
			}
		}
	}
	xent := []torchXent{
		{N: 24, C: 16, V: 300, SoftCap: 30},
		{N: 17, C: 8, V: 50, SoftCap: 2},
	}
	for i := range xent {
		c := &xent[i]
		c.X, c.W = randF32(r, c.N*c.C, 4), randF32(r, c.V*c.C, 1)
		c.Targets = make([]int32, c.N)
		for j := range c.Targets {
			c.Targets[j] = int32(r.IntN(c.V))
			if j%5 == 3 {
				c.Targets[j] = -1
			}
		}
		c.GradScale = 1 / float32(c.N)
	}
	slopeHeads := []int{1, 2, 3, 5, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96}

	req, err := json.Marshal(map[string]any{
		"slope_heads": slopeHeads,
		"geglu":       map[string][]float32{"gate": gate, "up": up, "dout": gdout},
		"attn":        attn,
		"xent":        xent,
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, filepath.Join("testdata", "kernels_ref.py"))
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kernels_ref.py: %v\n%s", err, stderr.Bytes())
	}
	var ref struct {
		Slopes map[string][]float32 `json:"slopes"`
		GeGLU  struct {
			Out, DGate, DUp []float64
		} `json:"geglu"`
		Attn []struct{ Out, DQ, DK, DV []float64 } `json:"attn"`
		Xent []struct {
			Losses, DX, DW []float64
		} `json:"xent"`
	}
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatalf("kernels_ref.py answer: %v", err)
	}

	t.Run("ALiBiSlopes", func(t *testing.T) {
		for _, n := range slopeHeads {
			want := ref.Slopes[strconv.Itoa(n)]
			if got := tensor.ALiBiSlopes(n); !bitsEqual(got, want) {
				t.Errorf("ALiBiSlopes(%d) = %v, Baichuan's _get_interleave %v", n, got, want)
			}
		}
	})

	be := New()
	t.Run("GeGLU", func(t *testing.T) {
		gb, ub, db := upload(t, be, gate), upload(t, be, up), upload(t, be, gdout)
		ob, dg, du := upload(t, be, make([]float32, nGeglu)), upload(t, be, make([]float32, nGeglu)), upload(t, be, make([]float32, nGeglu))
		be.GeGLUForward(ob, gb, ub, nGeglu)
		be.GeGLUBackward(dg, du, db, gb, ub, nGeglu)
		for _, p := range []struct {
			name string
			got  tensor.Buffer
			want []float64
		}{{"out", ob, ref.GeGLU.Out}, {"dgate", dg, ref.GeGLU.DGate}, {"dup", du, ref.GeGLU.DUp}} {
			if err := closeTo(download(t, be, p.got), p.want, 1e-6, 1e-6); err != nil {
				t.Errorf("%s: %v", p.name, err)
			}
		}
	})

	t.Run("Attention", func(t *testing.T) {
		if len(ref.Attn) != len(attn) {
			t.Fatalf("%d answers for %d attention cases", len(ref.Attn), len(attn))
		}
		for i, c := range attn {
			a := tensor.Attn{B: c.B, T: c.T, Hq: c.Hq, Hkv: c.Hkv, D: c.D, Scale: c.Scale, SoftCap: c.SoftCap, Window: c.Window}
			if c.ALiBi {
				a.ALiBi = upload(t, be, tensor.ALiBiSlopes(c.Hq))
			}
			var sb tensor.Buffer
			if c.Seg != nil {
				sb = uploadI32(t, be, c.Seg)
			}
			nq, nk := len(c.Q), len(c.K)
			qb, kb, vb, gb := upload(t, be, c.Q), upload(t, be, c.K), upload(t, be, c.V), upload(t, be, c.Dout)
			ob, lb := upload(t, be, make([]float32, nq)), upload(t, be, make([]float32, c.B*c.Hq*c.T))
			dq, dk, dv := upload(t, be, make([]float32, nq)), upload(t, be, make([]float32, nk)), upload(t, be, make([]float32, nk))
			be.AttentionForward(ob, lb, qb, kb, vb, sb, a)
			be.AttentionBackward(dq, dk, dv, gb, qb, kb, vb, ob, lb, sb, a)
			w := ref.Attn[i]
			name := func(s string) string { return strconv.Itoa(i) + " " + s }
			optsClose(t, name("out"), download(t, be, ob), w.Out, 2e-5)
			optsClose(t, name("dq"), download(t, be, dq), w.DQ, 1e-4)
			optsClose(t, name("dk"), download(t, be, dk), w.DK, 1e-4)
			optsClose(t, name("dv"), download(t, be, dv), w.DV, 1e-4)
		}
	})

	t.Run("CrossEntropy", func(t *testing.T) {
		if len(ref.Xent) != len(xent) {
			t.Fatalf("%d answers for %d cross-entropy cases", len(ref.Xent), len(xent))
		}
		for i, c := range xent {
			const chunk = 7
			lb, dxb, dwb := upload(t, be, make([]float32, c.N)), upload(t, be, make([]float32, c.N*c.C)), upload(t, be, make([]float32, c.V*c.C))
			be.CrossEntropy(lb, dxb, dwb, upload(t, be, c.X), upload(t, be, c.W), uploadI32(t, be, c.Targets),
				upload(t, be, make([]float32, chunk*c.V)),
				tensor.CrossEntropy{N: c.N, C: c.C, V: c.V, GradScale: c.GradScale, ChunkRows: chunk, SoftCap: c.SoftCap})
			w := ref.Xent[i]
			name := func(s string) string { return strconv.Itoa(i) + " " + s }
			attnClose(t, name("losses"), download(t, be, lb), w.Losses, 2e-6)
			attnClose(t, name("dx"), download(t, be, dxb), w.DX, 1e-5)
			attnClose(t, name("dw"), download(t, be, dwb), w.DW, 1e-5)
		}
	})
}
