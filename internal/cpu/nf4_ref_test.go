package cpu

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// TestNF4AgainstPyTorch quantises the same values with lathe's kernel and
// with testdata/nf4_ref.py (PyTorch, from the QLoRA paper's scheme and the
// published code table) and requires identical codes, scales and
// dequantised values.
func TestNF4AgainstPyTorch(t *testing.T) {
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import torch").CombinedOutput(); err != nil {
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatalf("PyTorch is required (LATHE_REQUIRE_PEERS=1): %v\n%s", err, out)
		}
		t.Skipf("no PyTorch: %v", err)
	}
	n := 64 * 600 // three absmax groups, the last partial
	r := rand.New(rand.NewPCG(3, 4))
	x := randF32(r, n, 0.05)
	for i := range x[64*10 : 64*11] { // one block of outliers
		x[64*10+i] *= 40
	}
	for i := range x[64*20 : 64*21] { // an all-zero block
		x[64*20+i] = 0
	}
	var in bytes.Buffer
	binary.Write(&in, binary.LittleEndian, x)
	cmd := exec.Command(python, filepath.Join("testdata", "nf4_ref.py"))
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nf4_ref.py: %v\n%s", err, stderr.Bytes())
	}
	var ref struct {
		Codes   []int     `json:"codes"`
		AbsmaxQ []int     `json:"absmax_q"`
		Scale2  []float32 `json:"scale2"`
		Offset  float32   `json:"offset"`
		Dequant []float32 `json:"dequant"`
	}
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}

	be := New()
	q, err := tensor.AllocNF4(be, n)
	if err != nil {
		t.Fatal(err)
	}
	xb, deq := upload(t, be, x), upload(t, be, make([]float32, n))
	be.QuantizeNF4(q, xb)
	be.DequantNF4(deq, q, 0, n)
	packed := make([]byte, n/2)
	if err := be.Download(packed, q.Codes.As(tensor.U8)); err != nil {
		t.Fatal(err)
	}
	blocks, _ := tensor.NF4Sizes(n)
	absQ := make([]byte, blocks)
	if err := be.Download(absQ, q.Absmax); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		c := int(packed[i/2] >> 4)
		if i%2 == 1 {
			c = int(packed[i/2] & 15)
		}
		if c != ref.Codes[i] {
			t.Fatalf("value %d (%v): code %d, PyTorch %d", i, x[i], c, ref.Codes[i])
		}
	}
	for b := range blocks {
		if int(int8(absQ[b])) != ref.AbsmaxQ[b] {
			t.Fatalf("block %d: absmax code %d, PyTorch %d", b, int8(absQ[b]), ref.AbsmaxQ[b])
		}
	}
	if got := download(t, be, q.Offset)[0]; got != ref.Offset {
		t.Errorf("offset %v, PyTorch %v", got, ref.Offset)
	}
	for g, s := range download(t, be, q.Scale2) {
		if s != ref.Scale2[g] {
			t.Errorf("group %d scale %v, PyTorch %v", g, s, ref.Scale2[g])
		}
	}
	for i, v := range download(t, be, deq) {
		if v != ref.Dequant[i] {
			t.Fatalf("dequantised value %d: %v, PyTorch %v", i, v, ref.Dequant[i])
		}
	}
}
