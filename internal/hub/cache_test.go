package hub

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeHFCache lays out repo in an HF cache at dir as huggingface_hub does:
// blobs named by etag, snapshot entries as relative symlinks, refs/<branch>.
func writeHFCache(t *testing.T, dir string, repo *fakeRepo, branch string, only ...string) {
	t.Helper()
	root := CacheRepoDir(dir, Repo{repo.typ, repo.id})
	for name, f := range repo.files {
		if len(only) > 0 && !Selected(name, only, nil) {
			continue
		}
		etag := gitSHA1(f.data)
		if f.lfs {
			etag = sha256Hex(f.data)
		}
		blob := filepath.Join(root, "blobs", etag)
		must(t, os.MkdirAll(filepath.Dir(blob), 0o755))
		must(t, os.WriteFile(blob, f.data, 0o644))
		link := filepath.Join(root, "snapshots", repo.commit, filepath.FromSlash(name))
		must(t, os.MkdirAll(filepath.Dir(link), 0o755))
		rel, err := filepath.Rel(filepath.Dir(link), blob)
		must(t, err)
		must(t, os.Symlink(rel, link))
	}
	must(t, os.MkdirAll(filepath.Join(root, "refs"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "refs", branch), []byte(repo.commit), 0o644))
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
	sources := map[string]string{}
	snap, err := c.Download(ctx, r, "main", dest, DownloadOptions{
		Exclude:  []string{"sub/"},
		FileDone: func(f FileInfo, src string, _ time.Duration) { sources[f.Path] = src },
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
		if f.Path == "model.safetensors" && f.SHA256 != sha256Hex(repo.files[f.Path].data) {
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
	blob := filepath.Join(CacheRepoDir(cache, r), "blobs", sha256Hex(repo.files["model.safetensors"].data))
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
	h := newFakeHub(t)
	repo := modelRepo()
	h.add(repo)
	cache := t.TempDir()
	writeHFCache(t, cache, repo, "main", "model.safetensors")
	c, _ := testClient(h, "")
	c.CacheDir = cache
	dest := t.TempDir()
	if _, err := c.Download(context.Background(), Repo{Model, "org/tiny"}, "main", dest, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	wantTree(t, dest, repo, "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "sub/dir/notes.txt")
	for _, r := range h.reqs() {
		if strings.Contains(r.path, "model.safetensors") || r.host == strings.TrimPrefix(h.cdn.URL, "http://") {
			t.Errorf("fetched %s %s although the HF cache has it", r.method, r.path)
		}
	}
}
