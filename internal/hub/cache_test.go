package hub

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lathe-ml/lathe/internal/hub/hubtest"
	"time"
)

func writeHFCache(t *testing.T, dir string, repo *hubtest.Repo, branch string, only ...string) {
	t.Helper()
	must(t, hubtest.WriteHFCache(dir, repo, branch, only...))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestOffline(t *testing.T) {
	repo := modelRepo()
	cache := t.TempDir()
	writeHFCache(t, cache, repo, "main")
	// No server: any network access fails.
	c := &Client{Endpoint: "http://127.0.0.1:1", Offline: true, CacheDir: cache}
	ctx := context.Background()
	r := Repo{Model, "org/tiny"}

	commit, err := c.ResolveRevision(ctx, r, "main")
	if err != nil || commit != commitA {
		t.Fatalf("ResolveRevision = %q, %v", commit, err)
	}
	dest := t.TempDir()
	var mu sync.Mutex
	sources := map[string]string{}
	snap, err := c.Download(ctx, r, "main", dest, DownloadOptions{
		Exclude: []string{"sub/"},
		FileDone: func(f FileInfo, src string, _ time.Duration) {
			mu.Lock()
			sources[f.Path] = src
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Commit != commitA {
		t.Errorf("commit %s", snap.Commit)
	}
	wantTree(t, dest, repo, "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
	for p, src := range sources {
		if src != "hf-cache" {
			t.Errorf("%s came from %s", p, src)
		}
	}
	// The listing recovers the digests from the blob names.
	for _, f := range snap.Files {
		if f.Path == "model.safetensors" && f.SHA256 != hubtest.SHA256Hex(repo.Files[f.Path].Data) {
			t.Errorf("offline listing lost the sha256 of %s", f.Path)
		}
	}

	for _, tc := range []struct {
		name string
		repo Repo
		rev  string
	}{
		{"unknown branch", r, "dev"},
		{"uncached repo", Repo{Model, "org/other"}, "main"},
		{"uncached commit", r, commitB},
	} {
		_, err := c.Download(ctx, tc.repo, tc.rev, t.TempDir(), DownloadOptions{})
		if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "HF_HUB_OFFLINE") || !strings.Contains(err.Error(), cache) {
			t.Errorf("%s: got %v, want an offline error naming HF_HUB_OFFLINE and the cache", tc.name, err)
		}
	}

	// A damaged blob is an error offline, never copied.
	blob := filepath.Join(CacheRepoDir(cache, r), "blobs", hubtest.SHA256Hex(repo.Files["model.safetensors"].Data))
	must(t, os.WriteFile(blob, []byte("damaged"), 0o644))
	dest = t.TempDir()
	_, err = c.Download(ctx, r, "main", dest, DownloadOptions{Include: []string{"*.safetensors"}})
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Errorf("damaged cache blob: got %v, want a checksum error", err)
	}
	if got := readTree(t, dest); len(got) != 0 {
		t.Error("a damaged cache file landed in the destination")
	}
}

func TestOnlineReusesCache(t *testing.T) {
	h := hubtest.New(t)
	repo := modelRepo()
	h.Add(repo)
	cache := t.TempDir()
	writeHFCache(t, cache, repo, "main", "model.safetensors")
	c, _ := testClient(h, "")
	c.CacheDir = cache
	dest := t.TempDir()
	if _, err := c.Download(context.Background(), Repo{Model, "org/tiny"}, "main", dest, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	wantTree(t, dest, repo, "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "sub/dir/notes.txt")
	for _, r := range h.Requests() {
		if strings.Contains(r.Path, "model.safetensors") || r.Host == strings.TrimPrefix(h.CDN.URL, "http://") {
			t.Errorf("fetched %s %s although the HF cache has it", r.Method, r.Path)
		}
	}
}
