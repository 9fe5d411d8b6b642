// Package download is the "download" stage kind: it brings a base model or a
// dataset into the pipeline, from the Hugging Face Hub, a URL or a local path.
//
//	stage "download" "base" {
//	  repo     = "Qwen/Qwen2.5-0.5B-Instruct"   # or dataset = "org/name"
//	  revision = "main"                         # branch, tag or commit
//	  include  = ["*.json", "*.safetensors"]    # optional fnmatch globs
//	  exclude  = ["original/*"]
//	}
//	stage "download" "words" {
//	  url    = "https://example.org/words.txt"
//	  sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//	}
//	stage "download" "local" { path = "models/tiny" }   # relative to the pipeline file
//
// Exactly one source (repo, dataset, url, path) is given. Every stage declares
// the same outputs; what each holds depends on the source:
//
//	output     repo (model)     dataset repo     url / path
//	files      every file       every file       every file
//	model      every file       (empty)          every file
//	tokenizer  tokenizer files  tokenizer files  tokenizer files
//	dataset    (empty)          every file       every file
//	commit     resolved sha     resolved sha     ""
//
// The tokenizer files are the top-level tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, added_tokens.json, tokenizer.model and other
// sentencepiece/tiktoken models, vocab.json, vocab.txt, merges.txt and
// chat_template.jinja/.json. A model repository downloaded without
// include/exclude that has none of them is an error (lathe could not train or
// chat with it); with include/exclude the empty tokenizer is only logged,
// since the user chose the files.
//
// The cache key holds, besides the arguments, the commit the revision
// resolves to, the sha256 of a url source and the content digest of a path
// source. A branch or tag is pinned: the engine records the commit it
// resolved to in the pipeline's lock file (pipeline.lock.hcl) and hands it
// back through the key context and Request.Pins, so a pinned stage plans
// without asking the Hub and Run downloads exactly the pinned commit. A commit
// sha revision needs no pin and never asks the Hub either. Without a pin (a
// caller that does not use the lock), the key resolves the revision over the
// network and Run resolves it again; the commit output says which commit was
// fetched.
//
// The Hub client is internal/hub, configured from the environment (HF_ENDPOINT,
// HF_TOKEN, HF_HUB_OFFLINE, HF_HUB_CACHE/HF_HOME). Partial downloads live in
// the stage's checkpoint directory, so a rerun after an interruption resumes
// them. This package does not convert formats or validate that the files form
// a usable model: the stages that read the artifacts do.
package download

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/hub"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// Version is the kind's cache-key salt.
const Version = "1"

// The outputs every download stage declares.
var outputs = map[string]stage.Output{
	"files":     {Type: stage.ArtifactType(stage.FilesArtifact), Summary: "every downloaded file"},
	"model":     {Type: stage.ArtifactType(stage.ModelArtifact), Summary: "the model files (empty for a dataset repository)"},
	"tokenizer": {Type: stage.ArtifactType(stage.TokenizerArtifact), Summary: "the tokenizer files only"},
	"dataset":   {Type: stage.ArtifactType(stage.DatasetArtifact), Summary: "the dataset files (empty for a model repository)"},
	"commit":    {Type: cty.String, Summary: "the commit sha a Hub revision resolved to (\"\" for url and path sources)"},
}

var (
	repoIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$`)
	sha256RE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// Kind returns the download stage kind. Its Hub client is configured from the
// environment each time it is used.
func Kind() *stage.Kind {
	return &stage.Kind{
		Name:    "download",
		Version: Version,
		Summary: "fetch a model or dataset from the Hugging Face Hub, a URL or a local path",
		Schema: hcldec.ObjectSpec{
			"repo":     &hcldec.ValidateSpec{Wrapped: &hcldec.AttrSpec{Name: "repo", Type: cty.String}, Func: validateRepoID("repo")},
			"dataset":  &hcldec.ValidateSpec{Wrapped: &hcldec.AttrSpec{Name: "dataset", Type: cty.String}, Func: validateRepoID("dataset")},
			"revision": &hcldec.AttrSpec{Name: "revision", Type: cty.String},
			"include":  &hcldec.AttrSpec{Name: "include", Type: cty.List(cty.String)},
			"exclude":  &hcldec.AttrSpec{Name: "exclude", Type: cty.List(cty.String)},
			"url":      &hcldec.ValidateSpec{Wrapped: &hcldec.AttrSpec{Name: "url", Type: cty.String}, Func: validateURL},
			"sha256":   &hcldec.ValidateSpec{Wrapped: &hcldec.AttrSpec{Name: "sha256", Type: cty.String}, Func: validateSHA256},
			"path":     &hcldec.AttrSpec{Name: "path", Type: cty.String},
		},
		Outputs:  checkedOutputs,
		KeyLines: keyLines,
		Pin:      &stage.Pinner{Inputs: pinInputs, Resolve: pinResolve},
		Run:      run,
	}
}

func validateRepoID(attr string) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if v.IsNull() || !v.IsKnown() {
			return nil
		}
		if !repoIDRE.MatchString(v.AsString()) || strings.Contains(v.AsString(), "..") {
			return stage.Error("Invalid repository id", fmt.Sprintf("%s = %q: want a Hub repository id such as \"org/name\".", attr, v.AsString()))
		}
		return nil
	}
}

func validateURL(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	u, err := url.Parse(v.AsString())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return stage.Error("Invalid url", fmt.Sprintf("url = %q: want an http or https URL.", v.AsString()))
	}
	return nil
}

func validateSHA256(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	if !sha256RE.MatchString(strings.TrimPrefix(v.AsString(), "sha256:")) {
		return stage.Error("Invalid sha256", fmt.Sprintf("sha256 = %q: want 64 hexadecimal digits.", v.AsString()))
	}
	return nil
}

// source is the decoded source of a download stage.
type source struct {
	kind     string // "repo", "dataset", "url" or "path"
	value    string
	revision string
	include  []string
	exclude  []string
	sha256   string
}

func str(args cty.Value, name string) (string, bool) {
	if !args.Type().IsObjectType() || !args.Type().HasAttribute(name) {
		return "", false
	}
	v := args.GetAttr(name)
	if v.IsNull() || !v.IsKnown() {
		return "", false
	}
	return v.AsString(), true
}

func strList(args cty.Value, name string) []string {
	if !args.Type().IsObjectType() || !args.Type().HasAttribute(name) {
		return nil
	}
	v := args.GetAttr(name)
	if v.IsNull() || !v.IsWhollyKnown() {
		return nil
	}
	var out []string
	for _, e := range v.AsValueSlice() {
		if !e.IsNull() {
			out = append(out, e.AsString())
		}
	}
	return out
}

func isSet(args cty.Value, name string) (set, known bool) {
	if !args.Type().IsObjectType() || !args.Type().HasAttribute(name) {
		return false, true
	}
	v := args.GetAttr(name)
	if !v.IsKnown() {
		return true, false
	}
	return !v.IsNull(), true
}

// checkArgs reports argument combinations the schema cannot express.
// Unknown values (not yet computed upstream) are given the benefit of the doubt.
func checkArgs(args cty.Value) hcl.Diagnostics {
	if args.IsNull() || !args.IsKnown() {
		return nil
	}
	var given []string
	for _, n := range []string{"repo", "dataset", "url", "path"} {
		set, known := isSet(args, n)
		if !known {
			return nil
		}
		if set {
			given = append(given, n)
		}
	}
	if len(given) != 1 {
		what := "none is"
		if len(given) > 1 {
			what = strings.Join(given, " and ") + " are"
		}
		return stage.Error("Exactly one source", "A download stage takes exactly one of repo, dataset, url or path; "+what+" set.")
	}
	var diags hcl.Diagnostics
	src := given[0]
	shaSet, _ := isSet(args, "sha256")
	if src == "url" && !shaSet {
		diags = append(diags, stage.Error("Missing sha256", "A url source needs sha256 = \"<64 hex digits>\" so that the download is verified and cacheable.")...)
	}
	if src != "url" && shaSet {
		diags = append(diags, stage.Error("Unexpected sha256", "sha256 only applies to a url source.")...)
	}
	if src == "url" || src == "path" {
		for _, n := range []string{"revision", "include", "exclude"} {
			if set, _ := isSet(args, n); set {
				diags = append(diags, stage.Error("Unexpected "+n, n+" only applies to repo and dataset sources.")...)
			}
		}
	}
	return diags
}

func checkedOutputs(args cty.Value) (map[string]stage.Output, hcl.Diagnostics) {
	return outputs, checkArgs(args)
}

func sourceOf(args cty.Value) (source, error) {
	if diags := checkArgs(args); diags.HasErrors() {
		return source{}, diags
	}
	var s source
	for _, n := range []string{"repo", "dataset", "url", "path"} {
		if v, ok := str(args, n); ok {
			s.kind, s.value = n, v
		}
	}
	if s.kind == "" {
		return source{}, errors.New("download: no source")
	}
	s.revision, _ = str(args, "revision")
	if s.revision == "" {
		s.revision = "main"
	}
	s.include = strList(args, "include")
	s.exclude = strList(args, "exclude")
	s.sha256, _ = str(args, "sha256")
	s.sha256 = strings.ToLower(strings.TrimPrefix(s.sha256, "sha256:"))
	return s, nil
}

func (s source) repo() hub.Repo {
	if s.kind == "dataset" {
		return hub.Repo{Type: hub.Dataset, ID: s.value}
	}
	return hub.Repo{Type: hub.Model, ID: s.value}
}

func localPath(base, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

// resolveTimeout bounds how long computing a cache key may wait on the Hub.
const resolveTimeout = 2 * time.Minute

// pinInputs says what a Hub source would resolve: the repository and a
// revision that is not already a commit. Other sources need no pin.
func pinInputs(args cty.Value) (map[string]string, error) {
	s, err := sourceOf(args)
	if err != nil {
		return nil, err
	}
	if (s.kind != "repo" && s.kind != "dataset") || hub.IsCommit(s.revision) {
		return nil, nil
	}
	return map[string]string{"repo": s.repo().String(), "revision": s.revision}, nil
}

// pinResolve resolves the revision to a commit over the network.
func pinResolve(ctx context.Context, args cty.Value) (map[string]string, error) {
	s, err := sourceOf(args)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	commit, err := hub.FromEnv().ResolveRevision(ctx, s.repo(), s.revision)
	if err != nil {
		return nil, fmt.Errorf("download: resolving %s revision %q: %w", s.repo(), s.revision, err)
	}
	return map[string]string{"commit": commit}, nil
}

// pinnedCommit returns the pinned commit, if any, checking its form.
func pinnedCommit(pins map[string]string) (string, error) {
	c, ok := pins["commit"]
	if !ok {
		return "", nil
	}
	if !hub.IsCommit(c) {
		return "", fmt.Errorf("download: pinned commit %q is not a 40-digit commit sha (fix or delete it in pipeline.lock.hcl, or run `lathe lock -update`)", c)
	}
	return c, nil
}

func keyLines(kc stage.KeyContext, args cty.Value) ([]stage.KeyLine, error) {
	s, err := sourceOf(args)
	if err != nil {
		return nil, err
	}
	switch s.kind {
	case "repo", "dataset":
		if c, err := pinnedCommit(stage.PinsOf(kc)); err != nil || c != "" {
			if err != nil {
				return nil, err
			}
			return []stage.KeyLine{{Label: "commit", Value: c}}, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
		defer cancel()
		commit, err := hub.FromEnv().ResolveRevision(ctx, s.repo(), s.revision)
		if err != nil {
			return nil, fmt.Errorf("download: resolving %s revision %q: %w", s.repo(), s.revision, err)
		}
		return []stage.KeyLine{{Label: "commit", Value: commit}}, nil
	case "url":
		return []stage.KeyLine{{Label: "sha256", Value: "sha256:" + s.sha256}}, nil
	default:
		digest, err := kc.HashPath(localPath(kc.BaseDir(), s.value))
		if err != nil {
			return nil, fmt.Errorf("download: path %q: %w", s.value, err)
		}
		return []stage.KeyLine{{Label: "content", Value: digest}}, nil
	}
}

// progress aggregates per-file byte counts into one Reporter.Progress.
type progress struct {
	mu    sync.Mutex
	rep   stage.Reporter
	done  map[string]int64
	sum   int64
	total int64
}

func (p *progress) update(file string, done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sum += done - p.done[file]
	p.done[file] = done
	p.rep.Progress(p.sum, p.total, "B")
}

func run(ctx context.Context, req *stage.Request) (*stage.Result, error) {
	s, err := sourceOf(req.Args)
	if err != nil {
		return nil, err
	}
	files := req.OutputDir("files")
	for _, o := range []string{"files", "model", "tokenizer", "dataset"} {
		if err := os.MkdirAll(req.OutputDir(o), 0o755); err != nil {
			return nil, fmt.Errorf("download: %w", err)
		}
	}
	partial := req.CheckpointDir
	if partial == "" {
		partial = req.ScratchDir
	}
	partial = filepath.Join(partial, "partial")
	start := time.Now()
	commit := ""
	switch s.kind {
	case "repo", "dataset":
		c, err := runHub(ctx, req, s, files, partial)
		if err != nil {
			return nil, err
		}
		commit = c
	case "url":
		if err := runURL(ctx, req, s, files, partial); err != nil {
			return nil, err
		}
	default:
		if err := copyTree(ctx, localPath(req.BaseDir, s.value), files); err != nil {
			return nil, fmt.Errorf("download: path %q: %w", s.value, err)
		}
	}
	n, size, err := distribute(req, s)
	if err != nil {
		return nil, err
	}
	secs := time.Since(start).Seconds()
	rate := ""
	if secs > 0 && s.kind != "path" {
		rate = fmt.Sprintf(", %s/s", human(int64(float64(size)/secs)))
	}
	req.Reporter.Logf("download: %d files, %s in %.1fs%s", n, human(size), secs, rate)
	return &stage.Result{Values: map[string]cty.Value{"commit": cty.StringVal(commit)}}, nil
}

func runHub(ctx context.Context, req *stage.Request, s source, dest, partial string) (string, error) {
	c := hub.FromEnv()
	rep := req.Reporter
	p := &progress{rep: rep, done: map[string]int64{}}
	rev := s.revision
	pinned, err := pinnedCommit(req.Pins)
	if err != nil {
		return "", err
	}
	if pinned != "" {
		rev = pinned
		rep.Logf("%s@%s is pinned to commit %s", s.repo(), s.revision, pinned)
	}
	snap, err := c.Download(ctx, s.repo(), rev, dest, hub.DownloadOptions{
		Include:    s.include,
		Exclude:    s.exclude,
		PartialDir: partial,
		OnPlan: func(snap *hub.Snapshot) {
			p.total = snap.TotalSize()
			mode := ""
			if c.Offline {
				mode = " (offline: from the HF cache)"
			}
			rep.Logf("%s@%s is commit %s: %d files, %s%s", s.repo(), s.revision, snap.Commit, len(snap.Files), human(snap.TotalSize()), mode)
		},
		Progress: func(file string, done, _ int64) { p.update(file, done) },
		FileDone: func(f hub.FileInfo, from string, d time.Duration) {
			size := f.Size
			if st, err := os.Stat(filepath.Join(dest, filepath.FromSlash(f.Path))); err == nil {
				size = st.Size()
			}
			p.update(f.Path, size)
			rate := ""
			if secs := d.Seconds(); secs > 0 {
				rate = fmt.Sprintf(", %s/s", human(int64(float64(size)/secs)))
			}
			rep.Logf("%s: %s from %s in %.1fs%s", f.Path, human(size), from, d.Seconds(), rate)
		},
	})
	if err != nil {
		return "", fmt.Errorf("download: %w", err)
	}
	// The partial files are all consumed; drop the directory.
	os.RemoveAll(partial)
	return snap.Commit, nil
}

func runURL(ctx context.Context, req *stage.Request, s source, dest, partial string) error {
	u, _ := url.Parse(s.value)
	name := path.Base(u.Path)
	if name == "" || name == "/" || name == "." || name == ".." {
		name = "download"
	}
	c := hub.FromEnv()
	p := &progress{rep: req.Reporter, done: map[string]int64{}}
	req.Reporter.Logf("fetching %s as %s", redact(u), name)
	err := c.FetchURL(ctx, s.value, s.sha256, filepath.Join(dest, name), partial, func(done, total int64) {
		if total > 0 {
			p.mu.Lock()
			p.total = total
			p.mu.Unlock()
		}
		p.update(name, done)
	})
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	os.RemoveAll(partial)
	return nil
}

func redact(u *url.URL) string {
	v := *u
	v.User = nil
	v.RawQuery = ""
	return v.String()
}

// tokenizerFile reports whether a top-level file name belongs to a tokenizer.
func tokenizerFile(name string) bool {
	switch name {
	case "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
		"tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "tiktoken.model",
		"vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja", "chat_template.json":
		return true
	}
	return strings.HasSuffix(name, ".tiktoken")
}

// distribute fills the model, tokenizer and dataset outputs from the files
// output (hard links, copies where links fail) and returns the file count and
// total size.
func distribute(req *stage.Request, s source) (int, int64, error) {
	files := req.OutputDir("files")
	var rels []string
	var size int64
	err := filepath.WalkDir(files, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(files, p)
		rels = append(rels, rel)
		size += info.Size()
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("download: %w", err)
	}
	sort.Strings(rels)
	if len(rels) == 0 {
		return 0, 0, fmt.Errorf("download: %s %q: no files", s.kind, s.value)
	}
	toks := 0
	for _, rel := range rels {
		var outs []string
		if s.kind != "dataset" {
			outs = append(outs, "model")
		}
		if s.kind != "repo" {
			outs = append(outs, "dataset")
		}
		if !strings.ContainsRune(rel, filepath.Separator) && tokenizerFile(rel) {
			outs = append(outs, "tokenizer")
			toks++
		}
		for _, o := range outs {
			if err := linkOrCopy(filepath.Join(files, rel), filepath.Join(req.OutputDir(o), rel)); err != nil {
				return 0, 0, fmt.Errorf("download: %w", err)
			}
		}
	}
	if toks == 0 && s.kind == "repo" {
		if len(s.include) == 0 && len(s.exclude) == 0 {
			return 0, 0, fmt.Errorf("download: model repository %s has no tokenizer files (tokenizer.json, tokenizer.model, vocab/merges, ...) at the top level, so the tokenizer output would be empty; if that is intended, select the files with include", s.value)
		}
		req.Reporter.Logf("note: no tokenizer files among the selected files of %s; the tokenizer output is empty", s.value)
	}
	return len(rels), size, nil
}

func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return copyFile(src, dst, 0o644)
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyTree copies a local file (into dst/<name>) or directory (its contents
// into dst). Symlinks are followed; special files are an error.
func copyTree(ctx context.Context, src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if st.Mode().IsRegular() {
		return copyFile(src, filepath.Join(dst, filepath.Base(src)), 0o644)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is neither a file nor a directory", src)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		info, err := os.Stat(p) // follow symlinks
		if err != nil {
			return err
		}
		if info.IsDir() {
			return copyTree(ctx, p, target)
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		return copyFile(p, target, 0o644)
	})
}

// human formats a byte count.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
