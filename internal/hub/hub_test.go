package hub

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/lathe-ml/lathe/internal/hub/hubtest"
	"time"
)

const (
	commitA = "0123456789abcdef0123456789abcdef01234567"
	commitB = "89abcdef0123456789abcdef0123456789abcdef"
)

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func modelRepo() *hubtest.Repo {
	return &hubtest.Repo{
		Type:   "model",
		ID:     "org/tiny",
		Commit: commitA,
		Refs:   map[string]string{"main": commitA, "v1.0": commitA, "refs/pr/1": commitA},
		Files: map[string]hubtest.File{
			"config.json":           {Data: []byte(`{"model_type":"llama","hidden_size":8}`)},
			"model.safetensors":     {Data: randBytes(3<<20+123, 1), LFS: true},
			"tokenizer.json":        {Data: []byte(`{"version":"1.0","model":{"type":"BPE"}}`)},
			"tokenizer_config.json": {Data: []byte(`{"bos_token":"<s>"}`)},
			"sub/dir/notes.txt":     {Data: []byte("nested file\n")},
		},
	}
}

type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func testClient(h *hubtest.Server, token string) (*Client, *sleeps) {
	s := &sleeps{}
	return &Client{Endpoint: h.API.URL, Token: token, Parallel: 3, Sleep: s.sleep, BaseBackoff: time.Millisecond}, s
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantTree(t *testing.T, dir string, repo *hubtest.Repo, names ...string) {
	t.Helper()
	got := readTree(t, dir)
	if len(got) != len(names) {
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Fatalf("destination holds %v, want %v", keys, names)
	}
	for _, n := range names {
		if !bytes.Equal(got[n], repo.Files[n].Data) {
			t.Errorf("%s: content differs (%d bytes, want %d)", n, len(got[n]), len(repo.Files[n].Data))
		}
	}
}

func TestDownloadRepo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		private bool
		noBlobs bool
		rev     string
	}{
		{name: "public", rev: "main"},
		{name: "private with token", private: true, rev: "v1.0"},
		{name: "listing without blobs uses HEAD", noBlobs: true, rev: "refs/pr/1"},
		{name: "pinned commit", rev: commitA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hubtest.New(t)
			h.Token = "hf_secret_token"
			h.NoBlobs(tc.noBlobs)
			repo := modelRepo()
			repo.Private = tc.private
			h.Add(repo)
			c, _ := testClient(h, h.Token)
			dest := t.TempDir()
			var mu sync.Mutex
			last := map[string]int64{}
			sources := map[string]string{}
			snap, err := c.Download(context.Background(), Repo{Model, "org/tiny"}, tc.rev, dest, DownloadOptions{
				Progress: func(p string, done, total int64) {
					mu.Lock()
					defer mu.Unlock()
					if done < last[p] {
						t.Errorf("%s: progress went back from %d to %d", p, last[p], done)
					}
					last[p] = done
				},
				FileDone: func(f FileInfo, source string, _ time.Duration) {
					mu.Lock()
					sources[f.Path] = source
					mu.Unlock()
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if snap.Commit != commitA {
				t.Errorf("commit %q, want %q", snap.Commit, commitA)
			}
			wantTree(t, dest, repo, "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "sub/dir/notes.txt")
			if got := last["model.safetensors"]; got != int64(len(repo.Files["model.safetensors"].Data)) {
				t.Errorf("last progress for model.safetensors %d, want its size", got)
			}
			if len(sources) != 5 || sources["model.safetensors"] != "hub" {
				t.Errorf("FileDone sources %v", sources)
			}
			sawCDN := false
			for _, r := range h.Requests() {
				onAPI := r.Host == strings.TrimPrefix(h.API.URL, "http://")
				switch {
				case onAPI && r.Auth != "Bearer "+h.Token:
					t.Errorf("request %s %s to the Hub without the token", r.Method, r.Path)
				case !onAPI && r.Auth != "":
					t.Errorf("token forwarded to the CDN host: %s %s", r.Method, r.Path)
				}
				if !onAPI {
					sawCDN = true
				}
				if onAPI && strings.Contains(r.Path, "/resolve/") && !strings.Contains(r.Path, "/resolve/"+commitA+"/") {
					t.Errorf("file fetched at %s, not at the resolved commit", r.Path)
				}
			}
			if !sawCDN {
				t.Error("the LFS file did not come from the CDN host")
			}
		})
	}
}

func TestDownloadFilters(t *testing.T) {
	h := hubtest.New(t)
	repo := modelRepo()
	h.Add(repo)
	c, _ := testClient(h, "")
	for _, tc := range []struct {
		include, exclude []string
		want             []string
	}{
		{include: []string{"*.json"}, want: []string{"config.json", "tokenizer.json", "tokenizer_config.json"}},
		{include: []string{"tokenizer*"}, want: []string{"tokenizer.json", "tokenizer_config.json"}},
		{include: []string{"sub/**"}, want: []string{"sub/dir/notes.txt"}},
		{exclude: []string{"*.safetensors", "sub/"}, want: []string{"config.json", "tokenizer.json", "tokenizer_config.json"}},
	} {
		dest := t.TempDir()
		if _, err := c.Download(context.Background(), Repo{Model, "org/tiny"}, "main", dest, DownloadOptions{Include: tc.include, Exclude: tc.exclude}); err != nil {
			t.Fatal(err)
		}
		wantTree(t, dest, repo, tc.want...)
	}
	_, err := c.Download(context.Background(), Repo{Model, "org/tiny"}, "main", t.TempDir(), DownloadOptions{Include: []string{"*.gguf"}})
	if err == nil || !strings.Contains(err.Error(), "nothing to download") {
		t.Errorf("include matching nothing: got %v", err)
	}
}

func TestResume(t *testing.T) {
	for _, tc := range []struct {
		name        string
		file        string
		ignoreRange bool
		wantRange   string
	}{
		{name: "LFS file via CDN, Range honoured", file: "model.safetensors", wantRange: "bytes=1048576-"},
		{name: "server ignores Range", file: "model.safetensors", ignoreRange: true, wantRange: "bytes=1048576-"},
		{name: "regular file", file: "tokenizer.json", wantRange: "bytes=10-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hubtest.New(t)
			repo := modelRepo()
			h.Add(repo)
			h.IgnoreRange(tc.ignoreRange)
			drop := int64(1 << 20)
			if tc.file == "tokenizer.json" {
				drop = 10
			}
			h.DropAfter(tc.file, drop)
			c, _ := testClient(h, "")
			dest := t.TempDir()
			if _, err := c.Download(context.Background(), Repo{Model, "org/tiny"}, "main", dest, DownloadOptions{}); err != nil {
				t.Fatal(err)
			}
			wantTree(t, dest, repo, "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "sub/dir/notes.txt")
			serving := h.API.URL // the host that sends the bytes
			if repo.Files[tc.file].LFS {
				serving = h.CDN.URL
			}
			var ranges []string
			for _, r := range h.Requests() {
				if r.Range != "" && r.Host == strings.TrimPrefix(serving, "http://") {
					ranges = append(ranges, r.Range)
				}
			}
			if len(ranges) != 1 || ranges[0] != tc.wantRange {
				t.Errorf("Range requests %q, want [%q]", ranges, tc.wantRange)
			}
		})
	}
}

func TestResumeAcrossCalls(t *testing.T) {
	// A partial file left by an interrupted run is continued by the next one.
	h := hubtest.New(t)
	repo := modelRepo()
	h.Add(repo)
	c, _ := testClient(h, "")
	c.MaxAttempts = 1 // the first call gives up at the first drop
	h.DropAfter("model.safetensors", 2<<20)
	partial := t.TempDir()
	dest := t.TempDir()
	r := Repo{Model, "org/tiny"}
	if _, err := c.Download(context.Background(), r, "main", dest, DownloadOptions{PartialDir: partial, Include: []string{"*.safetensors"}}); err == nil {
		t.Fatal("first call succeeded despite the dropped connection")
	}
	if got := readTree(t, dest); len(got) != 0 {
		t.Fatalf("a failed download left %d files in the destination", len(got))
	}
	if _, err := c.Download(context.Background(), r, "main", dest, DownloadOptions{PartialDir: partial, Include: []string{"*.safetensors"}}); err != nil {
		t.Fatal(err)
	}
	wantTree(t, dest, repo, "model.safetensors")
	rs := h.Requests()
	if last := rs[len(rs)-1]; last.Range != "bytes=2097152-" {
		t.Errorf("second call's download asked Range %q, want bytes=2097152-", last.Range)
	}
}

func TestChecksumMismatch(t *testing.T) {
	for _, file := range []string{"model.safetensors", "config.json"} {
		t.Run(file, func(t *testing.T) {
			h := hubtest.New(t)
			repo := modelRepo()
			h.Add(repo)
			h.Corrupt(file)
			c, _ := testClient(h, "")
			dest, partial := t.TempDir(), t.TempDir()
			_, err := c.Download(context.Background(), Repo{Model, "org/tiny"}, "main", dest, DownloadOptions{PartialDir: partial, Include: []string{file}})
			var ce *ChecksumError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ChecksumError", err)
			}
			want := hubtest.SHA256Hex(repo.Files[file].Data)
			if file == "config.json" {
				want = hubtest.GitSHA1(repo.Files[file].Data)
			}
			msg := err.Error()
			if ce.Want != want || !strings.Contains(msg, want) || !strings.Contains(msg, ce.Got) || ce.Got == want || !strings.Contains(msg, file) {
				t.Errorf("message %q should name %s and both digests (want %s)", msg, file, want)
			}
			if got := readTree(t, dest); len(got) != 0 {
				t.Errorf("destination holds %d files after a checksum failure", len(got))
			}
			if got := readTree(t, partial); len(got) != 0 {
				t.Errorf("the bad partial download was kept")
			}
		})
	}
}

func TestHTTPErrors(t *testing.T) {
	h := hubtest.New(t)
	h.Token = "hf_right"
	repo := modelRepo()
	repo.Private = true
	h.Add(repo)
	gated := modelRepo()
	gated.ID = "meta/gated"
	gated.Gated = true
	h.Add(gated)
	public := modelRepo()
	public.ID = "org/public"
	h.Add(public)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		token    string
		repo     string
		rev      string
		file     string // HEAD this file instead of listing
		sentinel error
		says     []string
	}{
		{name: "private without token", repo: "org/tiny", sentinel: ErrUnauthorized, says: []string{"HF_TOKEN", "401"}},
		{name: "wrong token", token: "hf_wrong", repo: "org/tiny", sentinel: ErrRepoNotFound, says: []string{"not found", "HF_TOKEN"}},
		{name: "gated", token: "hf_right", repo: "meta/gated", sentinel: ErrGated, says: []string{"accept the licence on the repo page", "/meta/gated", "HF_TOKEN"}},
		{name: "missing repo", token: "hf_right", repo: "org/nope", sentinel: ErrRepoNotFound, says: []string{"model org/nope not found"}},
		{name: "missing revision", repo: "org/public", rev: "nobranch", sentinel: ErrRevisionNotFound, says: []string{`revision "nobranch"`}},
		{name: "missing file", repo: "org/public", file: "nope.bin", sentinel: ErrEntryNotFound, says: []string{`file "nope.bin" not found`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := testClient(h, tc.token)
			var err error
			if tc.file != "" {
				_, err = c.FileMetadata(ctx, Repo{Model, tc.repo}, "main", tc.file)
			} else {
				_, err = c.RepoInfo(ctx, Repo{Model, tc.repo}, tc.rev)
			}
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("got %v, want %v", err, tc.sentinel)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("error leaks the token: %q", err)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	h := hubtest.New(t)
	repo := modelRepo()
	h.Add(repo)
	h.TooMany("model.safetensors", 2, "7")
	c, s := testClient(h, "")
	dest := t.TempDir()
	if _, err := c.Download(context.Background(), Repo{Model, "org/tiny"}, "main", dest, DownloadOptions{Include: []string{"model.safetensors"}}); err != nil {
		t.Fatal(err)
	}
	wantTree(t, dest, repo, "model.safetensors")
	if len(s.d) != 2 || s.d[0] != 7*time.Second || s.d[1] != 7*time.Second {
		t.Errorf("waits %v, want [7s 7s] as Retry-After said", s.d)
	}

	// A Retry-After beyond the allowed total wait fails at once, saying why.
	h.TooMany("model.safetensors", 1, "3600")
	c.MaxWait = time.Minute
	_, err := c.Download(context.Background(), Repo{Model, "org/tiny"}, "main", t.TempDir(), DownloadOptions{Include: []string{"model.safetensors"}})
	if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "giving up") {
		t.Errorf("got %v, want a give-up error naming the 429", err)
	}
}

func TestCancel(t *testing.T) {
	h := hubtest.New(t)
	h.Add(modelRepo())
	h.TooMany("model.safetensors", 100, "1")
	c, _ := testClient(h, "")
	ctx, cancel := context.WithCancel(context.Background())
	c.Sleep = func(context.Context, time.Duration) error { cancel(); return ctx.Err() }
	_, err := c.Download(ctx, Repo{Model, "org/tiny"}, "main", t.TempDir(), DownloadOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestFileMetadata(t *testing.T) {
	h := hubtest.New(t)
	h.Token = "tok"
	repo := modelRepo()
	h.Add(repo)
	c, _ := testClient(h, "tok")
	ctx := context.Background()
	m, err := c.FileMetadata(ctx, Repo{Model, "org/tiny"}, "main", "model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	data := repo.Files["model.safetensors"].Data
	if m.Commit != commitA || m.ETag != hubtest.SHA256Hex(data) || m.Size != int64(len(data)) || !strings.HasPrefix(m.Location, h.CDN.URL) {
		t.Errorf("LFS metadata %+v", m)
	}
	m, err = c.FileMetadata(ctx, Repo{Model, "org/tiny"}, "main", "config.json")
	if err != nil {
		t.Fatal(err)
	}
	data = repo.Files["config.json"].Data
	if m.Commit != commitA || m.ETag != hubtest.GitSHA1(data) || m.Size != int64(len(data)) || m.Location != "" {
		t.Errorf("regular file metadata %+v", m)
	}
	for _, r := range h.Requests() {
		if r.Host != strings.TrimPrefix(h.API.URL, "http://") {
			t.Errorf("HEAD followed a redirect to %s", r.Host)
		}
	}
}

func TestDatasetAndURLs(t *testing.T) {
	h := hubtest.New(t)
	ds := &hubtest.Repo{Type: "dataset", ID: "org/data", Commit: commitB, Refs: map[string]string{"main": commitB},
		Files: map[string]hubtest.File{"data/train.jsonl": {Data: []byte("{\"text\":\"a\"}\n")}, "README.md": {Data: []byte("# d\n")}}}
	h.Add(ds)
	c, _ := testClient(h, "")
	dest := t.TempDir()
	snap, err := c.Download(context.Background(), Repo{Dataset, "org/data"}, "", dest, DownloadOptions{Include: []string{"data/**"}})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Commit != commitB {
		t.Errorf("commit %s", snap.Commit)
	}
	wantTree(t, dest, ds, "data/train.jsonl")
	if got, want := c.ResolveURL(Repo{Dataset, "org/data"}, "refs/pr/1", "data/a b.json"), h.API.URL+"/datasets/org/data/resolve/refs%2Fpr%2F1/data/a%20b.json"; got != want {
		t.Errorf("ResolveURL = %s, want %s", got, want)
	}
	if _, err := c.RepoInfo(context.Background(), Repo{Model, "../etc"}, "main"); err == nil {
		t.Error("a repo id with .. was accepted")
	}
}

func TestFetchURL(t *testing.T) {
	h := hubtest.New(t)
	repo := modelRepo()
	h.Add(repo)
	h.Token = "tok"
	c, _ := testClient(h, "tok")
	data := repo.Files["model.safetensors"].Data
	u := h.CDN.URL + "/repos/" + hubtest.SHA256Hex(data) + "?file=model.safetensors"
	dst := filepath.Join(t.TempDir(), "w.bin")
	h.DropAfter("model.safetensors", 5000)
	if err := c.FetchURL(context.Background(), u, hubtest.SHA256Hex(data), dst, "", nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, data) {
		t.Error("FetchURL wrote different bytes")
	}
	bad := filepath.Join(t.TempDir(), "x.bin")
	err := c.FetchURL(context.Background(), u, strings.Repeat("ab", 32), bad, "", nil)
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Got != hubtest.SHA256Hex(data) {
		t.Errorf("got %v, want a sha256 mismatch", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Error("a file failing its sha256 was written")
	}
	for _, r := range h.Requests() {
		if r.Auth != "" {
			t.Error("token sent to a non-Hub host")
		}
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("HF_ENDPOINT", "http://hub.example:8080/")
	t.Setenv("HF_TOKEN", "hf_x")
	t.Setenv("HF_HUB_OFFLINE", "1")
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_HOME", "/srv/hf")
	c := FromEnv()
	if c.Endpoint != "http://hub.example:8080" || c.Token != "hf_x" || !c.Offline || c.CacheDir != "/srv/hf/hub" {
		t.Errorf("FromEnv = %+v", c)
	}
	t.Setenv("HF_HUB_CACHE", "/c")
	t.Setenv("HF_HUB_OFFLINE", "0")
	t.Setenv("HF_ENDPOINT", "")
	if c := FromEnv(); c.CacheDir != "/c" || c.Offline || c.Endpoint != DefaultEndpoint {
		t.Errorf("FromEnv = %+v", c)
	}
}

func TestNoNetwork(t *testing.T) {
	s := &sleeps{}
	c := &Client{Endpoint: "http://127.0.0.1:1", Sleep: s.sleep, MaxAttempts: 3}
	_, err := c.ResolveRevision(context.Background(), Repo{Model, "org/tiny"}, "main")
	if err == nil || !strings.Contains(err.Error(), "HF_HUB_OFFLINE=1") || len(s.d) != 2 {
		t.Errorf("got %v after waits %v, want a hint at offline mode after 2 waits", err, s.d)
	}
	// A pinned commit needs no network at all.
	if got, err := c.ResolveRevision(context.Background(), Repo{Model, "org/tiny"}, commitA); err != nil || got != commitA {
		t.Errorf("pinned commit: %q, %v", got, err)
	}
}
