package remote

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lathe-ml/lathe/pipeline/cache"
)

// commitLocal commits one result with the given files (path -> content)
// under artifact "out" into s, as a stage would.
func commitLocal(t *testing.T, s *cache.Store, keyText string, files map[string]string) *cache.Record {
	t.Helper()
	st, err := s.NewStaging()
	if err != nil {
		t.Fatal(err)
	}
	for p, c := range files {
		full := filepath.Join(st.Dir, "out", filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(st.Dir, "out", "link")); err != nil {
		t.Fatal(err)
	}
	k := cache.NewKey([]string{"test " + keyText})
	rec, err := s.Commit(st, []string{"out"}, cache.Record{Key: k.Sum, KeyText: k.Text, Kind: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func openPair(t *testing.T) (*Remote, string) {
	t.Helper()
	bucketDir := t.TempDir()
	r, err := Open(context.Background(), "file://"+bucketDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, bucketDir
}

func openStore(t *testing.T) *cache.Store {
	t.Helper()
	s, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var files = map[string]string{"a.txt": "alpha\n", "sub/b.bin": "beta", "sub/deeper/c": ""}

func TestPushPullRoundTrip(t *testing.T) {
	ctx := context.Background()
	r, _ := openPair(t)
	a, b := openStore(t), openStore(t)
	rec := commitLocal(t, a, "k1", files)

	if got, err := r.Pull(ctx, b, rec.Key); err != nil || got != nil {
		t.Fatalf("pull before push = %v, %v; want nil, nil", got, err)
	}
	wrote, err := r.Push(ctx, a, rec)
	if err != nil || !wrote {
		t.Fatalf("push = %v, %v", wrote, err)
	}
	if wrote, err := r.Push(ctx, a, rec); err != nil || wrote {
		t.Fatalf("second push = %v, %v; want false (write-once)", wrote, err)
	}
	got, err := r.Pull(ctx, b, rec.Key)
	if err != nil || got == nil {
		t.Fatalf("pull = %v, %v", got, err)
	}
	local, err := b.Lookup(rec.Key)
	if err != nil || local == nil {
		t.Fatalf("local lookup after pull = %v, %v", local, err)
	}
	if local.Artifacts["out"].Digest != rec.Artifacts["out"].Digest {
		t.Fatalf("digest %s, want %s", local.Artifacts["out"].Digest, rec.Artifacts["out"].Digest)
	}
	for p, c := range files {
		data, err := os.ReadFile(filepath.Join(b.ArtifactPath(local.Artifacts["out"].Digest), filepath.FromSlash(p)))
		if err != nil || string(data) != c {
			t.Errorf("%s = %q, %v; want %q", p, data, err, c)
		}
	}
	if probs, err := b.Verify(ctx); err != nil || len(probs) != 0 {
		t.Fatalf("verify after pull: %v %v", probs, err)
	}
}

func TestReadOnlyDoesNotPush(t *testing.T) {
	ctx := context.Background()
	r, _ := openPair(t)
	r.ReadOnly = true
	a := openStore(t)
	rec := commitLocal(t, a, "ro", files)
	if wrote, err := r.Push(ctx, a, rec); err != nil || wrote {
		t.Fatalf("read-only push = %v, %v", wrote, err)
	}
	if got, err := r.Lookup(ctx, rec.Key); err != nil || got != nil {
		t.Fatalf("lookup = %v, %v; want nothing", got, err)
	}
}

func TestCorruptRemoteIsDetected(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		mangle func(t *testing.T, path string)
	}{
		{"flipped byte", func(t *testing.T, p string) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			// 512-byte header of the first entry, then content: flip in the
			// middle of the archive, which lands in a file's content or header.
			for i := 512; i < len(data); i++ {
				if data[i] >= 'a' && data[i] <= 'z' {
					data[i] ^= 0x01
					break
				}
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, p string) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data[:700], 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"missing", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, bucket := openPair(t)
			a, b := openStore(t), openStore(t)
			rec := commitLocal(t, a, tc.name, files)
			if _, err := r.Push(ctx, a, rec); err != nil {
				t.Fatal(err)
			}
			obj, _ := artifactKey(rec.Artifacts["out"].Digest)
			tc.mangle(t, filepath.Join(bucket, filepath.FromSlash(obj)))
			got, err := r.Pull(ctx, b, rec.Key)
			if err == nil || got != nil {
				t.Fatalf("pull of corrupt object = %v, %v; want an error", got, err)
			}
			if tc.name != "missing" && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			if local, _ := b.Lookup(rec.Key); local != nil {
				t.Fatal("a corrupt remote entry was committed locally")
			}
		})
	}
}

func TestConcurrentWritersLeaveOneEntry(t *testing.T) {
	ctx := context.Background()
	r, _ := openPair(t)
	const n = 6
	var wg sync.WaitGroup
	wrote := make([]bool, n)
	errs := make([]error, n)
	var key string
	for i := 0; i < n; i++ {
		s := openStore(t)
		rec := commitLocal(t, s, "same", files)
		key = rec.Key
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			wrote[i], errs[i] = r.Push(ctx, s, rec)
		}(i)
	}
	wg.Wait()
	winners := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		if wrote[i] {
			winners++
		}
	}
	if winners != 1 {
		t.Fatalf("%d writers wrote the record; want exactly 1", winners)
	}
	b := openStore(t)
	if got, err := r.Pull(ctx, b, key); err != nil || got == nil {
		t.Fatalf("pull after the race = %v, %v", got, err)
	}
}

// A hostile archive cannot write outside the directory it is unpacked into.
func TestUnpackRefusesEscapes(t *testing.T) {
	tests := []struct {
		name    string
		entries []tar.Header
	}{
		{"dotdot path", []tar.Header{{Typeflag: tar.TypeReg, Name: "../x"}}},
		{"absolute path", []tar.Header{{Typeflag: tar.TypeReg, Name: "/x"}}},
		{"absolute link", []tar.Header{{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/etc"}}},
		{"escaping link", []tar.Header{{Typeflag: tar.TypeSymlink, Name: "a/l", Linkname: "../../x"}}},
		{"write through link", []tar.Header{
			{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "sub"},
			{Typeflag: tar.TypeReg, Name: "l/x"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range tc.entries {
				h.Mode = 0o644
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			parent := t.TempDir()
			if err := unpackTree(&buf, filepath.Join(parent, "out")); err == nil {
				t.Fatal("unpack accepted a hostile archive")
			}
			if _, err := os.Lstat(filepath.Join(parent, "x")); err == nil {
				t.Fatal("a file was written outside the tree")
			}
		})
	}
}
