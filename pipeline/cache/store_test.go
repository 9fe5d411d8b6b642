package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// writeTree creates files under dir from a map of slash path -> content.
// A content of "/" makes a directory; "->target" makes a symbolic link; a
// leading "!" makes an executable file.
func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		c := files[p]
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case c == "/":
			err = os.MkdirAll(full, 0o755)
		case strings.HasPrefix(c, "->"):
			err = os.Symlink(c[2:], full)
		case strings.HasPrefix(c, "!"):
			err = os.WriteFile(full, []byte(c[1:]), 0o755)
		default:
			err = os.WriteFile(full, []byte(c), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func testKey(s string) Key { return NewKey([]string{"lathe-key v1", "test " + s}) }

// commit stages the given artifact trees and commits them under key.
func commit(t testing.TB, s *Store, key Key, arts map[string]map[string]string) *Record {
	t.Helper()
	st, err := s.NewStaging()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name, files := range arts {
		names = append(names, name)
		if err := os.MkdirAll(filepath.Join(st.Dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeTree(t, filepath.Join(st.Dir, name), files)
	}
	sort.Strings(names)
	rec, err := s.Commit(st, names, Record{Key: key.Sum, KeyText: key.Text, Kind: "test", Address: "test.x",
		Values: map[string]json.RawMessage{"n": json.RawMessage(`42`)}})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), ".lathe"))
	if err != nil {
		t.Fatal(err)
	}
	// Artifacts are read-only; without root, TempDir's cleanup needs this.
	t.Cleanup(func() { makeWritable(s.Root()) })
	return s
}

func TestNewKey(t *testing.T) {
	k := NewKey([]string{"a 1", "b 2"})
	if k.Text != "a 1\nb 2\n" {
		t.Fatalf("text %q", k.Text)
	}
	// sha256("a 1\nb 2\n")
	if !validKey(k.Sum) {
		t.Fatalf("sum %q", k.Sum)
	}
	if NewKey([]string{"a 1", "b 3"}).Sum == k.Sum {
		t.Fatal("different texts, same sum")
	}
}

func TestCommitLookupRoundTrip(t *testing.T) {
	s := openStore(t)
	key := testKey("round trip")
	if rec, err := s.Lookup(key.Sum); rec != nil || err != nil {
		t.Fatalf("lookup before commit: %v %v", rec, err)
	}
	got := commit(t, s, key, map[string]map[string]string{
		"model": {"config.json": `{"a":1}`, "weights/w.bin": "0123456789", "run.sh": "!#!/bin/sh\n", "latest": "->weights/w.bin", "empty": "/"},
		"log":   {"log.txt": "hello"},
	})
	rec, err := s.Lookup(key.Sum)
	if err != nil || rec == nil {
		t.Fatalf("lookup after commit: %v %v", rec, err)
	}
	if rec.KeyText != key.Text || rec.Kind != "test" || string(rec.Values["n"]) != "42" {
		t.Fatalf("record %+v", rec)
	}
	if len(rec.Artifacts) != 2 || rec.Artifacts["model"] != got.Artifacts["model"] {
		t.Fatalf("artifacts %+v vs %+v", rec.Artifacts, got.Artifacts)
	}
	m := rec.Artifacts["model"]
	if m.Size != int64(len(`{"a":1}`)+10+len("#!/bin/sh\n")) || m.Files != 4 {
		t.Fatalf("model artifact %+v", m)
	}
	dir := s.ArtifactPath(m.Digest)
	data, err := os.ReadFile(filepath.Join(dir, "weights", "w.bin"))
	if err != nil || string(data) != "0123456789" {
		t.Fatalf("artifact content %q %v", data, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "latest")); err != nil || target != "weights/w.bin" {
		t.Fatalf("link %q %v", target, err)
	}
	// The stored tree hashes to its name and is read-only.
	a, err := HashTree(dir)
	if err != nil || a != m {
		t.Fatalf("rehash %+v %v, want %+v", a, err, m)
	}
	info, _ := os.Stat(filepath.Join(dir, "config.json"))
	if info.Mode().Perm()&0o222 != 0 {
		t.Fatalf("artifact file is writable: %v", info.Mode())
	}
	info, _ = os.Stat(filepath.Join(dir, "run.sh"))
	if info.Mode().Perm()&0o111 == 0 {
		t.Fatalf("executable bit lost: %v", info.Mode())
	}
	// The staging area is empty again.
	ents, _ := os.ReadDir(s.dir("staging"))
	if len(ents) != 0 {
		t.Fatalf("staging not consumed: %v", ents)
	}
}

func TestCommitErrors(t *testing.T) {
	s := openStore(t)
	key := testKey("errors")
	tests := []struct {
		name  string
		setup func(dir string)
		names []string
		rec   Record
		want  string
	}{
		{"missing output", func(string) {}, []string{"out"}, Record{Key: key.Sum}, "artifact out"},
		{"output is a file", func(d string) { os.WriteFile(filepath.Join(d, "out"), nil, 0o644) }, []string{"out"}, Record{Key: key.Sum}, "not a directory"},
		{"bad key", func(string) {}, nil, Record{Key: "xyz"}, "invalid cache key"},
		{"key text mismatch", func(string) {}, nil, Record{Key: key.Sum, KeyText: "other\n"}, "not the SHA-256"},
		{"escaping link", func(d string) { writeTree(t, d, map[string]string{"out/l": "->../../x"}) }, []string{"out"}, Record{Key: key.Sum}, "outside the tree"},
		{"absolute link", func(d string) { writeTree(t, d, map[string]string{"out/l": "->/etc/passwd"}) }, []string{"out"}, Record{Key: key.Sum}, "absolute"},
		{"bad name", func(string) {}, []string{"../x"}, Record{Key: key.Sum}, "bad or repeated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := s.NewStaging()
			if err != nil {
				t.Fatal(err)
			}
			tc.setup(st.Dir)
			_, err = s.Commit(st, tc.names, tc.rec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(st.Dir); !os.IsNotExist(err) {
				t.Fatal("failed commit did not consume the staging dir")
			}
			if rec, _ := s.Lookup(key.Sum); rec != nil {
				t.Fatal("failed commit left a record")
			}
		})
	}
}

func TestDedup(t *testing.T) {
	s := openStore(t)
	files := map[string]string{"a.txt": "same", "sub/b.txt": "bytes"}
	r1 := commit(t, s, testKey("one"), map[string]map[string]string{"out": files})
	r2 := commit(t, s, testKey("two"), map[string]map[string]string{"out": files, "other": {"c": "different"}})
	if r1.Artifacts["out"].Digest != r2.Artifacts["out"].Digest {
		t.Fatal("identical trees got different digests")
	}
	ents, err := os.ReadDir(s.dir("artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 {
		t.Fatalf("want 2 stored artifacts (deduped), got %d", len(ents))
	}
}

func TestCrashBetweenArtifactsAndRecord(t *testing.T) {
	s := openStore(t)
	key := testKey("crash")
	crash := errors.New("simulated crash")
	testHookBeforeRecord = func() error {
		// The artifacts are in the store now, the record is not: nothing
		// may be visible yet.
		if rec, err := s.Lookup(key.Sum); rec != nil || err != nil {
			t.Errorf("record visible before it was written: %v %v", rec, err)
		}
		return crash
	}
	defer func() { testHookBeforeRecord = nil }()
	st, err := s.NewStaging()
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, st.Dir, map[string]string{"out/data": "payload"})
	if _, err := s.Commit(st, []string{"out"}, Record{Key: key.Sum, KeyText: key.Text}); !errors.Is(err, crash) {
		t.Fatalf("commit: %v", err)
	}
	testHookBeforeRecord = nil
	if rec, err := s.Lookup(key.Sum); rec != nil || err != nil {
		t.Fatalf("lookup after crash: %v %v", rec, err)
	}
	// A crash also leaves a staging dir behind whose process is gone: make
	// one by hand (no lock holder).
	stale := s.dir("staging", "20260101T000000-dead")
	writeTree(t, stale, map[string]string{"out/partial": "half"})
	arts, _ := os.ReadDir(s.dir("artifacts"))
	if len(arts) != 1 {
		t.Fatalf("want the orphan artifact in the store, got %d", len(arts))
	}
	rep, err := s.GC(context.Background(), GCOptions{OlderThan: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.RemovedArtifacts) != 1 || rep.Staging != 1 {
		t.Fatalf("gc report %+v", rep)
	}
	arts, _ = os.ReadDir(s.dir("artifacts"))
	mans, _ := os.ReadDir(s.dir("manifests"))
	stg, _ := os.ReadDir(s.dir("staging"))
	if len(arts) != 0 || len(mans) != 0 || len(stg) != 0 {
		t.Fatalf("left after gc: %d artifacts, %d manifests, %d staging entries", len(arts), len(mans), len(stg))
	}
}

func TestLookupCorruptRecord(t *testing.T) {
	s := openStore(t)
	key := testKey("corrupt")
	commit(t, s, key, map[string]map[string]string{"out": {"f": "x"}})
	p := s.recordPath(key.Sum)
	os.WriteFile(p, []byte(`{"key": "trunc`), 0o644)
	if _, err := s.Lookup(key.Sum); err == nil || !strings.Contains(err.Error(), "corrupt record") {
		t.Fatalf("lookup of corrupt record: %v", err)
	}
	if _, err := s.Lookup("../../etc"); err == nil {
		t.Fatal("lookup accepted a bad key")
	}
}

func TestLookupTouchesLastUsed(t *testing.T) {
	s := openStore(t)
	key := testKey("touch")
	commit(t, s, key, map[string]map[string]string{"out": {"f": "x"}})
	old := time.Now().Add(-48 * time.Hour)
	p := s.recordPath(key.Sum)
	os.Chtimes(p, old, old)
	if rec, err := s.Lookup(key.Sum); rec == nil || err != nil {
		t.Fatal(rec, err)
	}
	info, _ := os.Stat(p)
	if time.Since(info.ModTime()) > time.Hour {
		t.Fatalf("last-used time not refreshed: %v", info.ModTime())
	}
}

func TestCheckpointDir(t *testing.T) {
	s := openStore(t)
	key := testKey("ckpt")
	d, err := s.CheckpointDir(key.Sum)
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, d, map[string]string{"step-10/state": "s"})
	d2, _ := s.CheckpointDir(key.Sum)
	if d2 != d {
		t.Fatalf("checkpoint dir moved: %s vs %s", d, d2)
	}
	if _, err := os.Stat(filepath.Join(d, "step-10", "state")); err != nil {
		t.Fatal("checkpoint lost")
	}
	if err := s.RemoveCheckpoint(key.Sum); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d); !os.IsNotExist(err) {
		t.Fatal("checkpoint not removed")
	}
}

func TestDiscardIdempotent(t *testing.T) {
	s := openStore(t)
	st, err := s.NewStaging()
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, st.Dir, map[string]string{"a/b": "c"})
	for i := 0; i < 2; i++ {
		if err := st.Discard(); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(s.dir("staging"))
	if len(ents) != 0 {
		t.Fatalf("staging left: %v", ents)
	}
}

func ExampleDiffKeyText() {
	old := "lathe-key v1\nkind exec\narg command = [\"sh\"]\narg lr = 0.1\ninput data = sha256:aa\n"
	new := "lathe-key v1\nkind exec\narg command = [\"sh\"]\narg lr = 0.2\ninput data = sha256:bb\narg seed = 1\n"
	fmt.Print(DiffKeyText(old, new))
	// Output:
	// - arg lr = 0.1
	// + arg lr = 0.2
	// - input data = sha256:aa
	// + input data = sha256:bb
	// + arg seed = 1
}

func TestDiffKeyText(t *testing.T) {
	tests := []struct{ old, new, want string }{
		{"a 1\nb 2\n", "a 1\nb 2\n", ""},
		{"", "a 1\n", "+ a 1\n"},
		{"a 1\n", "", "- a 1\n"},
		{"kind exec\nkind-version 1\n", "kind exec\nkind-version 2\n", "- kind-version 1\n+ kind-version 2\n"},
		{"x 1\ny 2\nz 3\n", "x 1\nz 3\n", "- y 2\n"},
	}
	for _, tc := range tests {
		if got := DiffKeyText(tc.old, tc.new); got != tc.want {
			t.Errorf("DiffKeyText(%q, %q) = %q, want %q", tc.old, tc.new, got, tc.want)
		}
	}
}

func TestDiffKeyTextGolden(t *testing.T) {
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	old, new, want := read("key-old.txt"), read("key-new.txt"), read("key-diff.golden")
	if got := DiffKeyText(old, new); got != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", got, want)
	}
	if got := DiffKeyText(new, new); got != "" {
		t.Fatalf("diff of equal texts: %q", got)
	}
}
