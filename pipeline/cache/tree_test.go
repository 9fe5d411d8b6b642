package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// fixture is a small tree covering every entry type.
var fixture = map[string]string{
	"b.txt":         "bee\n",
	"a/x.bin":       "\x00\x01\x02",
	"a/run.sh":      "!#!/bin/sh\necho hi\n",
	"a-b/c":         "",
	"empty":         "/",
	"link":          "->a/x.bin",
	"a/up":          "->../b.txt",
	"a/deep/d/e.md": "# e",
}

func TestHashTreeDefinition(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, fixture)
	// The digest spelled out by hand from the package documentation.
	// Note the byte order: "a-b" < "a/..." because '-' < '/'.
	lines := strings.Join([]string{
		"d - 0 a",
		"d - 0 a-b",
		"f " + sha("") + " 0 a-b/c",
		"d - 0 a/deep",
		"d - 0 a/deep/d",
		"f " + sha("# e") + " 3 a/deep/d/e.md",
		"x " + sha("#!/bin/sh\necho hi\n") + " 18 a/run.sh",
		"l " + sha("../b.txt") + " 8 a/up",
		"f " + sha("\x00\x01\x02") + " 3 a/x.bin",
		"f " + sha("bee\n") + " 4 b.txt",
		"d - 0 empty",
		"l " + sha("a/x.bin") + " 7 link",
	}, "\n") + "\n"
	want := Artifact{Digest: "sha256:" + sha(lines), Size: 3 + 18 + 3 + 4, Files: 7}
	got, err := HashTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("HashTree = %+v, want %+v", got, want)
	}
	// Pinned so that a change of definition cannot go unnoticed; the same
	// value on every machine.
	const golden = "sha256:b6f6bfbc7f2d3a52299f25a8349d21101169e8ad13cef6fadcacba9c60bb555e"
	if got.Digest != golden {
		t.Fatalf("digest %s, pinned %s", got.Digest, golden)
	}
}

func TestHashTreeSensitivity(t *testing.T) {
	base := func(t *testing.T) string {
		dir := t.TempDir()
		writeTree(t, dir, fixture)
		return dir
	}
	ref, err := HashTree(base(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(dir string)
		changes bool
	}{
		{"nothing", func(string) {}, false},
		{"mtime", func(d string) {
			old := time.Unix(1e9, 0)
			os.Chtimes(filepath.Join(d, "b.txt"), old, old)
		}, false},
		{"read-only", func(d string) { os.Chmod(filepath.Join(d, "b.txt"), 0o400) }, false},
		{"content", func(d string) { os.WriteFile(filepath.Join(d, "b.txt"), []byte("bee!"), 0o644) }, true},
		{"exec bit", func(d string) { os.Chmod(filepath.Join(d, "b.txt"), 0o755) }, true},
		{"rename", func(d string) { os.Rename(filepath.Join(d, "b.txt"), filepath.Join(d, "c.txt")) }, true},
		{"empty dir added", func(d string) { os.Mkdir(filepath.Join(d, "new"), 0o755) }, true},
		{"link target", func(d string) {
			os.Remove(filepath.Join(d, "link"))
			os.Symlink("b.txt", filepath.Join(d, "link"))
		}, true},
		{"link replaced by file", func(d string) {
			os.Remove(filepath.Join(d, "link"))
			os.WriteFile(filepath.Join(d, "link"), []byte("a/x.bin"), 0o644)
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := base(t)
			tc.mutate(dir)
			got, err := HashTree(dir)
			if err != nil {
				t.Fatal(err)
			}
			if (got.Digest != ref.Digest) != tc.changes {
				t.Fatalf("digest changed = %v, want %v", got.Digest != ref.Digest, tc.changes)
			}
		})
	}
}

func TestHashTreeErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"absolute link", map[string]string{"l": "->/etc/passwd"}, "absolute"},
		{"escaping link", map[string]string{"a/l": "->../../x"}, "outside the tree"},
		{"newline in name", map[string]string{"a\nb": "x"}, "line break"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tc.files)
			if _, err := HashTree(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := HashTree(f); err == nil {
		t.Fatal("HashTree of a file succeeded")
	}
}

func TestHashTreeEmpty(t *testing.T) {
	a, err := HashTree(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != "sha256:"+sha("") || a.Size != 0 || a.Files != 0 {
		t.Fatalf("%+v", a)
	}
}

// countReads installs the read hook for the test and returns the counter.
func countReads(t *testing.T) *atomic.Int64 {
	var n atomic.Int64
	testHookReadFile = func(string) { n.Add(1) }
	t.Cleanup(func() { testHookReadFile = nil })
	return &n
}

func setOld(t *testing.T, paths ...string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
	for _, p := range paths {
		// Without following links: a link's own mtime counts.
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHashPathFile(t *testing.T) {
	s := openStore(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "data.txt")
	os.WriteFile(f, []byte("hello"), 0o644)
	setOld(t, f)
	reads := countReads(t)

	d1, err := s.HashPath(f)
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256:" + sha("f "+sha("hello")+" 5 .\n"); d1 != want {
		t.Fatalf("file digest %s, want %s", d1, want)
	}
	d2, err := s.HashPath(f)
	if err != nil || d2 != d1 {
		t.Fatalf("second call %s %v", d2, err)
	}
	if reads.Load() != 1 {
		t.Fatalf("file read %d times for two calls, want 1", reads.Load())
	}
	// The digest does not depend on the name.
	g := filepath.Join(dir, "other-name")
	os.WriteFile(g, []byte("hello"), 0o644)
	if d, _ := s.HashPath(g); d != d1 {
		t.Fatal("file digest depends on its name")
	}

	// Size change, then an mtime-only change, are both noticed.
	reads.Store(0)
	os.WriteFile(f, []byte("hello, world"), 0o644)
	setOld(t, f)
	d3, _ := s.HashPath(f)
	if d3 == d1 || reads.Load() != 1 {
		t.Fatalf("size change: digest %s (was %s), %d reads", d3, d1, reads.Load())
	}
	reads.Store(0)
	later := time.Now().Add(-30 * time.Minute)
	os.Chtimes(f, later, later)
	if d, _ := s.HashPath(f); d != d3 || reads.Load() != 1 {
		t.Fatalf("mtime change: %d reads, want 1 (rehash)", reads.Load())
	}
	// A file modified just now is hashed but not remembered (racy).
	reads.Store(0)
	os.WriteFile(f, []byte("fresh"), 0o644)
	s.HashPath(f)
	s.HashPath(f)
	if reads.Load() != 2 {
		t.Fatalf("racy file: %d reads, want 2", reads.Load())
	}
}

func TestHashPathTree(t *testing.T) {
	s := openStore(t)
	dir := filepath.Join(t.TempDir(), "in")
	writeTree(t, dir, fixture)
	var all []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		all = append(all, p)
		return nil
	})
	setOld(t, all...)
	want, _ := HashTree(dir)
	reads := countReads(t)
	for i := 0; i < 3; i++ {
		d, err := s.HashPath(dir)
		if err != nil || d != want.Digest {
			t.Fatalf("HashPath %s %v, want %s", d, err, want.Digest)
		}
	}
	if reads.Load() != 5 { // the five regular files, once
		t.Fatalf("%d file reads for three calls, want 5", reads.Load())
	}
	// Touch one file deep in the tree without changing its size.
	reads.Store(0)
	deep := filepath.Join(dir, "a", "deep", "d", "e.md")
	os.WriteFile(deep, []byte("# E"), 0o644)
	setOld(t, deep)
	d, _ := s.HashPath(dir)
	if d == want.Digest || reads.Load() != 5 {
		t.Fatalf("changed tree: digest unchanged=%v, %d reads", d == want.Digest, reads.Load())
	}
	// A symlink to the tree hashes like the tree.
	link := filepath.Join(t.TempDir(), "alias")
	os.Symlink(dir, link)
	if d2, _ := s.HashPath(link); d2 != d {
		t.Fatal("symlink to tree hashes differently")
	}
	if _, err := s.HashPath(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("HashPath of a missing path succeeded")
	}
}
