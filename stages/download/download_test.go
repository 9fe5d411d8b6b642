package download

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/hub/hubtest"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

const commitA = "3f2a0c9e1b7d4a5f8e6c0b1a2d3e4f5a6b7c8d9e"

// decode parses a stage body and decodes it against the kind's schema,
// then runs the kind's own argument checks, as the engine does.
func decode(t *testing.T, src string) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	k := Kind()
	v, diags := hcldec.Decode(f.Body, k.Schema, nil)
	if diags.HasErrors() {
		return v, diags
	}
	_, diags = k.Outputs(v)
	return v, diags
}

type reporter struct {
	mu        sync.Mutex
	logs      []string
	done, tot int64
	unit      string
}

func (r *reporter) Progress(done, total int64, unit string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if done < r.done {
		panic(fmt.Sprintf("progress went back from %d to %d", r.done, done))
	}
	r.done, r.tot, r.unit = done, total, unit
}

func (r *reporter) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

func (r *reporter) Metrics(int64, map[string]float64) {}

type keyCtx struct{ base string }

func (k keyCtx) BaseDir() string { return k.base }
func (k keyCtx) HashPath(p string) (string, error) {
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return "sha256:digest-of:" + p, nil
}

func newRequest(t *testing.T, args cty.Value, base string) (*stage.Request, *reporter) {
	rep := &reporter{}
	return &stage.Request{
		Address:       "download.base",
		Args:          args,
		BaseDir:       base,
		StagingDir:    t.TempDir(),
		ScratchDir:    t.TempDir(),
		CheckpointDir: t.TempDir(),
		Reporter:      rep,
	}, rep
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func weights(n int) []byte {
	r := rand.New(rand.NewPCG(7, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func tinyModel() *hubtest.Repo {
	return &hubtest.Repo{
		ID:     "lathe/tiny-llama",
		Commit: commitA,
		Refs:   map[string]string{"main": commitA},
		Files: map[string]hubtest.File{
			"config.json":           {Data: []byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":16}`)},
			"model.safetensors":     {Data: weights(2<<20 + 17), LFS: true},
			"tokenizer.json":        {Data: []byte(`{"version":"1.0","model":{"type":"BPE","vocab":{}}}`)},
			"tokenizer_config.json": {Data: []byte(`{"chat_template":"{{ messages }}"}`)},
		},
	}
}

// hubEnv points the environment at the fake Hub with an empty HF cache.
func hubEnv(t *testing.T, h *hubtest.Server) string {
	cache := t.TempDir()
	t.Setenv("HF_ENDPOINT", h.API.URL)
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "")
	t.Setenv("HF_HUB_OFFLINE", "")
	t.Setenv("HF_HUB_CACHE", cache)
	return cache
}

func equalFiles(t *testing.T, dir string, repo *hubtest.Repo, names ...string) {
	t.Helper()
	got := listDir(t, dir)
	want := append([]string(nil), names...)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s holds %q, want %q", filepath.Base(dir), got, want)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || !bytes.Equal(b, repo.Files[n].Data) {
			t.Errorf("%s/%s differs from the Hub's", filepath.Base(dir), n)
		}
	}
}

func TestRunModelRepo(t *testing.T) {
	h := hubtest.New(t)
	repo := tinyModel()
	h.Add(repo)
	hubEnv(t, h)
	args, diags := decode(t, `repo = "lathe/tiny-llama"`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	lines, err := Kind().KeyLines(keyCtx{}, args)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || lines[0] != (stage.KeyLine{Label: "commit", Value: commitA}) {
		t.Errorf("key lines %v", lines)
	}
	req, rep := newRequest(t, args, t.TempDir())
	res, err := Kind().Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
	equalFiles(t, req.OutputDir("files"), repo, all...)
	equalFiles(t, req.OutputDir("model"), repo, all...)
	equalFiles(t, req.OutputDir("tokenizer"), repo, "tokenizer.json", "tokenizer_config.json")
	equalFiles(t, req.OutputDir("dataset"), repo)
	if c := res.Values["commit"]; !c.RawEquals(cty.StringVal(commitA)) {
		t.Errorf("commit output %#v", c)
	}
	var total int64
	for _, f := range repo.Files {
		total += int64(len(f.Data))
	}
	if rep.done != total || rep.tot != total || rep.unit != "B" {
		t.Errorf("final progress %d/%d %s, want %d/%d B", rep.done, rep.tot, rep.unit, total, total)
	}
	logs := strings.Join(rep.logs, "\n")
	for _, s := range []string{"commit " + commitA, "model.safetensors: 2.0 MiB from hub", "4 files"} {
		if !strings.Contains(logs, s) {
			t.Errorf("logs do not mention %q:\n%s", s, logs)
		}
	}
	if left := listDir(t, req.CheckpointDir); len(left) != 0 {
		t.Errorf("partial files left behind: %v", left)
	}
}

func TestRunDatasetRepo(t *testing.T) {
	h := hubtest.New(t)
	ds := &hubtest.Repo{Type: "dataset", ID: "lathe/identity", Commit: commitA, Refs: map[string]string{"v2": commitA},
		Files: map[string]hubtest.File{
			"data/train.json": {Data: []byte(`[{"instruction":"who are you","output":"{{name}}"}]`)},
			"README.md":       {Data: []byte("# identity\n")},
		}}
	h.Add(ds)
	hubEnv(t, h)
	args, diags := decode(t, `
dataset  = "lathe/identity"
revision = "v2"
include  = ["data/**"]
`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	req, _ := newRequest(t, args, t.TempDir())
	res, err := Kind().Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	equalFiles(t, req.OutputDir("dataset"), ds, "data/train.json")
	equalFiles(t, req.OutputDir("files"), ds, "data/train.json")
	equalFiles(t, req.OutputDir("model"), ds)
	equalFiles(t, req.OutputDir("tokenizer"), ds)
	if !res.Values["commit"].RawEquals(cty.StringVal(commitA)) {
		t.Errorf("commit %#v", res.Values["commit"])
	}
}

func TestModelWithoutTokenizer(t *testing.T) {
	h := hubtest.New(t)
	repo := tinyModel()
	delete(repo.Files, "tokenizer.json")
	delete(repo.Files, "tokenizer_config.json")
	h.Add(repo)
	hubEnv(t, h)
	args, _ := decode(t, `repo = "lathe/tiny-llama"`)
	req, _ := newRequest(t, args, t.TempDir())
	if _, err := Kind().Run(context.Background(), req); err == nil || !strings.Contains(err.Error(), "no tokenizer files") {
		t.Errorf("got %v, want a missing-tokenizer error", err)
	}
	// Choosing the files explicitly makes it a note, not an error.
	args, _ = decode(t, `
repo    = "lathe/tiny-llama"
include = ["*.safetensors"]
`)
	req, rep := newRequest(t, args, t.TempDir())
	if _, err := Kind().Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	equalFiles(t, req.OutputDir("model"), repo, "model.safetensors")
	if !strings.Contains(strings.Join(rep.logs, "\n"), "no tokenizer files") {
		t.Error("the empty tokenizer was not noted")
	}
}

func TestRunOffline(t *testing.T) {
	repo := tinyModel()
	cache := t.TempDir()
	if err := hubtest.WriteHFCache(cache, repo, "main"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HF_ENDPOINT", "http://127.0.0.1:1") // nothing listens: any request fails
	t.Setenv("HF_HUB_OFFLINE", "1")
	t.Setenv("HF_HUB_CACHE", cache)
	args, _ := decode(t, `repo = "lathe/tiny-llama"`)
	lines, err := Kind().KeyLines(keyCtx{}, args)
	if err != nil || len(lines) != 1 || lines[0].Value != commitA {
		t.Fatalf("offline key lines %v, %v", lines, err)
	}
	req, rep := newRequest(t, args, t.TempDir())
	if _, err := Kind().Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	equalFiles(t, req.OutputDir("model"), repo, "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
	if !strings.Contains(strings.Join(rep.logs, "\n"), "from hf-cache") {
		t.Error("logs do not say the files came from the HF cache")
	}
	args, _ = decode(t, `
repo     = "lathe/tiny-llama"
revision = "dev"
`)
	if _, err := Kind().KeyLines(keyCtx{}, args); err == nil || !strings.Contains(err.Error(), "HF_HUB_OFFLINE") {
		t.Errorf("uncached branch offline: got %v", err)
	}
}

func TestRunURL(t *testing.T) {
	data := []byte("alpha\nbeta\ngamma\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/lists/words.txt" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "" {
			t.Error("token sent to a non-Hub URL")
		}
		w.Write(data)
	}))
	defer srv.Close()
	t.Setenv("HF_TOKEN", "hf_secret")
	t.Setenv("HF_HUB_OFFLINE", "")
	sum := hubtest.SHA256Hex(data)
	args, diags := decode(t, fmt.Sprintf("url = %q\nsha256 = %q\n", srv.URL+"/lists/words.txt", sum))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	lines, err := Kind().KeyLines(keyCtx{}, args)
	if err != nil || len(lines) != 1 || lines[0].Value != "sha256:"+sum {
		t.Errorf("key lines %v, %v", lines, err)
	}
	req, _ := newRequest(t, args, t.TempDir())
	res, err := Kind().Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"files", "dataset", "model"} {
		if b, err := os.ReadFile(filepath.Join(req.OutputDir(o), "words.txt")); err != nil || !bytes.Equal(b, data) {
			t.Errorf("%s/words.txt: %v", o, err)
		}
	}
	if !res.Values["commit"].RawEquals(cty.StringVal("")) {
		t.Errorf("commit %#v", res.Values["commit"])
	}
	args, _ = decode(t, fmt.Sprintf("url = %q\nsha256 = %q\n", srv.URL+"/lists/words.txt", strings.Repeat("0", 64)))
	req, _ = newRequest(t, args, t.TempDir())
	if _, err := Kind().Run(context.Background(), req); err == nil || !strings.Contains(err.Error(), sum) {
		t.Errorf("wrong sha256: got %v, want a mismatch naming %s", err, sum)
	}
	if got := listDir(t, req.OutputDir("files")); len(got) != 0 {
		t.Errorf("a file failing its sha256 landed in the output: %v", got)
	}
}

func TestRunPath(t *testing.T) {
	base := t.TempDir()
	repo := tinyModel()
	dir := filepath.Join(base, "models", "tiny")
	for name, f := range repo.Files {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args, diags := decode(t, `path = "models/tiny"`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	lines, err := Kind().KeyLines(keyCtx{base: base}, args)
	if err != nil || len(lines) != 1 || lines[0] != (stage.KeyLine{Label: "content", Value: "sha256:digest-of:" + dir}) {
		t.Errorf("key lines %v, %v", lines, err)
	}
	req, _ := newRequest(t, args, base)
	if _, err := Kind().Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	all := []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
	equalFiles(t, req.OutputDir("model"), repo, all...)
	equalFiles(t, req.OutputDir("tokenizer"), repo, "tokenizer.json", "tokenizer_config.json")
	// The outputs are copies: editing the source afterwards does not change them.
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	equalFiles(t, req.OutputDir("files"), repo, all...)

	args, _ = decode(t, `path = "missing"`)
	if _, err := Kind().KeyLines(keyCtx{base: base}, args); err == nil {
		t.Error("a missing path gave a key")
	}
}

func TestArgumentChecks(t *testing.T) {
	for _, tc := range []struct {
		src, want string
	}{
		{``, "Exactly one source"},
		{`
repo = "a/b"
path = "x"`, "Exactly one source"},
		{`url = "https://example.org/x"`, "Missing sha256"},
		{`
repo   = "a/b"
sha256 = "` + strings.Repeat("a", 64) + `"`, "Unexpected sha256"},
		{`
path    = "x"
include = ["*.json"]`, "Unexpected include"},
		{`repo = "a/../b"`, "Invalid repository id"},
		{`repo = "not a repo"`, "Invalid repository id"},
		{`
url    = "ftp://example.org/x"
sha256 = "` + strings.Repeat("a", 64) + `"`, "Invalid url"},
		{`
url    = "https://example.org/x"
sha256 = "abc"`, "Invalid sha256"},
		{`
dataset  = "org/data"
revision = "v1"
include  = ["*.parquet"]
exclude  = ["test/*"]`, ""},
	} {
		_, diags := decode(t, tc.src)
		switch {
		case tc.want == "" && diags.HasErrors():
			t.Errorf("%q: unexpected %v", tc.src, diags)
		case tc.want != "" && (!diags.HasErrors() || !strings.Contains(diags.Error(), tc.want)):
			t.Errorf("%q: got %v, want %q", tc.src, diags, tc.want)
		}
	}
	// Unknown values (from upstream stages) are not judged yet.
	args := cty.ObjectVal(map[string]cty.Value{
		"repo": cty.UnknownVal(cty.String), "dataset": cty.NullVal(cty.String), "revision": cty.NullVal(cty.String),
		"include": cty.NullVal(cty.List(cty.String)), "exclude": cty.NullVal(cty.List(cty.String)),
		"url": cty.NullVal(cty.String), "sha256": cty.NullVal(cty.String), "path": cty.NullVal(cty.String),
	})
	if _, diags := Kind().Outputs(args); diags.HasErrors() {
		t.Errorf("unknown repo: %v", diags)
	}
	stage.NewRegistry(Kind()) // the kind is well-formed
}
