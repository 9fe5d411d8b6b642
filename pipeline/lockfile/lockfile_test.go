package lockfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	golden, err := os.ReadFile("testdata/two.lock.hcl")
	if err != nil {
		t.Fatal(err)
	}
	// Built in reverse order: the output must still be sorted.
	f := New()
	f.Set(Entry{Addr: `download.m["a"]`, Kind: "download",
		Inputs: map[string]string{"revision": "v1", "repo": "dataset org/data"},
		Values: map[string]string{"commit": "0000000000000000000000000000000000000001"}})
	f.Set(Entry{Addr: "download.base", Kind: "download",
		Inputs: map[string]string{"repo": "model org/tiny", "revision": "main"},
		Values: map[string]string{"commit": "3f2a0c9e1b7d4a5f8e6c0b1a2d3e4f5a6b7c8d9e"}})
	if got := string(f.Bytes()); got != string(golden) {
		t.Fatalf("rendered lock differs from testdata/two.lock.hcl:\n%s", got)
	}
	path := filepath.Join(t.TempDir(), FileName)
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	g, diags := Read(path)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got, want := g.Addrs(), f.Addrs(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("addresses %v, want %v", got, want)
	}
	for _, a := range f.Addrs() {
		e, _ := f.Get(a)
		h, ok := g.Get(a)
		if !ok || !e.Equal(h) {
			t.Errorf("%s: read back %+v, want %+v", a, h, e)
		}
	}
	if string(g.Bytes()) != string(golden) {
		t.Error("a read lock renders differently from the file it was read from")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("write left %d files in the directory, want only the lock", len(entries))
	}
}

func TestReadMissing(t *testing.T) {
	f, diags := Read(filepath.Join(t.TempDir(), FileName))
	if diags.HasErrors() || f == nil || f.Len() != 0 {
		t.Fatalf("missing lock: %v, %v; want an empty lock", f, diags)
	}
}

func TestEmptyLockRenders(t *testing.T) {
	f, diags := Parse(New().Bytes(), "x.hcl")
	if diags.HasErrors() || f.Len() != 0 {
		t.Fatalf("empty lock does not round-trip: %v", diags)
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"syntax", "pin \"a\" {\n  kind = \n}\n", "pipeline.lock.hcl:2,"},
		{"unknown block", "\nstage \"a\" {}\n", "pipeline.lock.hcl:2,1-6: Unsupported block type"},
		{"missing values", "pin \"a\" {\n  kind = \"download\"\n  inputs = {}\n}\n", "pipeline.lock.hcl:1,9-9: Missing required argument; The argument \"values\" is required"},
		{"not a map", "pin \"a\" {\n  kind = \"download\"\n  inputs = {}\n  values = \"x\"\n}\n", "pipeline.lock.hcl:4,12-15: Invalid pin values"},
		{"number value", "pin \"a\" {\n  kind = \"download\"\n  inputs = {}\n  values = { commit = 1 }\n}\n", "commit is number"},
		{"empty kind", "pin \"a\" {\n  kind = \"\"\n  inputs = {}\n  values = {}\n}\n", "pipeline.lock.hcl:2,10-12: Invalid pin kind"},
		{"duplicate", "pin \"a\" {\n  kind = \"k\"\n  inputs = {}\n  values = {}\n}\npin \"a\" {\n  kind = \"k\"\n  inputs = {}\n  values = {}\n}\n", "pipeline.lock.hcl:6,5-8: Duplicate pin; a is pinned twice; the first pin is at pipeline.lock.hcl:1,1-8"},
		{"variable", "pin \"a\" {\n  kind = var.x\n  inputs = {}\n  values = {}\n}\n", "pipeline.lock.hcl:2,10-13: Variables not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, diags := Parse([]byte(tt.src), "pipeline.lock.hcl")
			if !diags.HasErrors() || f != nil {
				t.Fatalf("no error for a malformed lock")
			}
			if !strings.Contains(diags.Error(), tt.want) {
				t.Fatalf("diagnostics %q do not contain %q", diags.Error(), tt.want)
			}
		})
	}
}
