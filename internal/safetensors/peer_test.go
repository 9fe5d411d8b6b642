package safetensors

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

// peerResult is what testdata/js/peer.mjs prints: Hugging Face's JS client
// (@huggingface/hub parseSafetensorsMetadata) parsing a directory.
type peerResult struct {
	Sharded        bool                         `json:"sharded"`
	Filepaths      []string                     `json:"filepaths"`
	ParameterCount map[string]int64             `json:"parameterCount"`
	Metadata       map[string]map[string]string `json:"metadata"`
	Tensors        map[string]struct {
		File        string   `json:"file"`
		DType       string   `json:"dtype"`
		Shape       []int    `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
		SHA256      string   `json:"sha256"`
	} `json:"tensors"`
}

// runPeer runs the JS peer on dir; it skips the test when node or the npm
// packages are missing, unless LATHE_REQUIRE_PEERS=1.
func runPeer(t *testing.T, dir string) peerResult {
	t.Helper()
	node, err := exec.LookPath("node")
	script, _ := filepath.Abs(filepath.Join("testdata", "js", "peer.mjs"))
	_, modErr := os.Stat(filepath.Join("testdata", "js", "node_modules", "@huggingface", "hub", "package.json"))
	if err != nil || modErr != nil {
		msg := "peer missing: need node and `npm ci` in internal/safetensors/testdata/js"
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	out, err := exec.Command(node, script, dir).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("peer failed: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("peer failed: %v", err)
	}
	var r peerResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("peer output: %v\n%s", err, out)
	}
	return r
}

func TestPeerReadsLatheFiles(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	var tensors []Tensor
	for i, dt := range []DType{F32, BF16, F16, F64, I64, I32, U8, BOOL, I8, I16} {
		size, _ := byteSize(dt, 6)
		tensors = append(tensors, Tensor{Name: "model.layers." + string(rune('a'+i)) + ".weight", DType: dt, Shape: []int{2, 3}, Data: randomBytes(rng, int(size))})
	}
	tensors = append(tensors, Tensor{Name: "scalar", DType: F32, Shape: []int{}, Data: randomBytes(rng, 4)})
	meta := map[string]string{"format": "pt"}
	for _, c := range []struct {
		name     string
		maxShard int64
	}{{"single", 1 << 20}, {"sharded", 40}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			files, err := WriteSharded(dir, tensors, meta, c.maxShard)
			if err != nil {
				t.Fatal(err)
			}
			r := runPeer(t, dir)
			if r.Sharded != (len(files) > 1) {
				t.Errorf("peer sharded=%v, lathe wrote %v", r.Sharded, files)
			}
			s, err := OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if len(r.Tensors) != len(tensors) {
				t.Fatalf("peer saw %d tensors, want %d", len(r.Tensors), len(tensors))
			}
			var params int64
			for _, info := range s.Tensors() {
				p, ok := r.Tensors[info.Name]
				if !ok {
					t.Errorf("peer misses %q", info.Name)
					continue
				}
				raw, err := s.Bytes(info.Name)
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(raw)
				if p.File != info.File || p.DType != string(info.DType) || !reflect.DeepEqual(p.Shape, info.Shape) ||
					p.DataOffsets != [2]int64{info.Begin, info.End} || p.SHA256 != hex.EncodeToString(sum[:]) {
					t.Errorf("%q: peer %+v, lathe %+v", info.Name, p, info)
				}
				if len(info.Shape) > 0 { // the peer does not count 0-dim tensors as parameters
					params += info.NumElements()
				}
			}
			var peerParams int64
			for _, n := range r.ParameterCount {
				peerParams += n
			}
			if peerParams != params {
				t.Errorf("peer counts %d parameters, lathe %d", peerParams, params)
			}
			for f, m := range r.Metadata {
				if !reflect.DeepEqual(m, meta) {
					t.Errorf("%s: peer metadata %v", f, m)
				}
			}
		})
	}
}
