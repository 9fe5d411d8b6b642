package cuda

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPTXMatchesSources checks, without CUDA, that every committed PTX
// file was generated from the current kernel sources: its header records
// the sha256 of common.cuh followed by its .cu file (kernels/ptx.sh), and
// every .cu has its .ptx and vice versa. `make cuda-check` goes further:
// it recompiles with nvcc and assembles the PTX with ptxas.
func TestPTXMatchesSources(t *testing.T) {
	common, err := os.ReadFile("kernels/common.cuh")
	if err != nil {
		t.Fatal(err)
	}
	cus, _ := filepath.Glob("kernels/*.cu")
	ptxs, _ := filepath.Glob("kernels/*.ptx")
	if len(cus) == 0 {
		t.Fatal("no kernels/*.cu")
	}
	for _, p := range ptxs {
		if _, err := os.Stat(strings.TrimSuffix(p, ".ptx") + ".cu"); err != nil {
			t.Errorf("%s has no source: %v", p, err)
		}
	}
	for _, cu := range cus {
		src, err := os.ReadFile(cu)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(append(append([]byte{}, common...), src...))
		want := hex.EncodeToString(sum[:])
		ptx := strings.TrimSuffix(cu, ".cu") + ".ptx"
		got, err := ptxSourceHash(ptx)
		if err != nil {
			t.Errorf("%s: %v (run make ptx)", cu, err)
			continue
		}
		if got != want {
			t.Errorf("%s was compiled from other sources than %s (recorded sha256 %s, sources %s): run make ptx", ptx, cu, got, want)
		}
	}
}

// ptxSourceHash reads the "// lathe-source-sha256: " header of a PTX file.
func ptxSourceHash(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for i := 0; sc.Scan() && i < 5; i++ {
		if h, ok := strings.CutPrefix(sc.Text(), "// lathe-source-sha256: "); ok {
			return h, nil
		}
	}
	return "", os.ErrNotExist
}

// TestPTXHeaderMissing checks that a PTX file without the header is
// reported rather than accepted.
func TestPTXHeaderMissing(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, text string }{
		{"bare.ptx", ".version 7.8\n.target sm_80\n"},
		{"late.ptx", "//\n//\n//\n//\n//\n// lathe-source-sha256: abc\n"},
	} {
		p := filepath.Join(dir, tc.name)
		if err := os.WriteFile(p, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if h, err := ptxSourceHash(p); err == nil {
			t.Errorf("%s: got hash %q, want an error", tc.name, h)
		}
	}
	if _, err := ptxSourceHash(filepath.Join(dir, "absent.ptx")); err == nil {
		t.Error("absent file: no error")
	}
}
