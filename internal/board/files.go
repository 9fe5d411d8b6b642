package board

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/pipeline/cache"
)

// errOutside is returned for a path that would leave its tree.
var errOutside = errors.New("path outside the allowed directory")

// safeJoin resolves rel inside base: rel must be a relative, slash-separated
// path without ".." elements ("" is base itself), and the result, its
// symbolic links followed, must still lie inside base (itself resolved).
func safeJoin(base, rel string) (string, error) {
	if strings.ContainsRune(rel, 0) || strings.Contains(rel, `\`) || slices.Contains(strings.Split(rel, "/"), "..") {
		return "", errOutside
	}
	rel = filepath.FromSlash(rel)
	if rel != "" && !filepath.IsLocal(rel) {
		return "", errOutside
	}
	realBase, err := filepath.EvalSymlinks(base)
	if err != nil {
		return "", err
	}
	p, err := filepath.EvalSymlinks(filepath.Join(realBase, rel))
	if err != nil {
		return "", err
	}
	if p != realBase && !strings.HasPrefix(p, realBase+string(filepath.Separator)) {
		return "", errOutside
	}
	return p, nil
}

// openStore opens the pipeline's store when it exists.
func (s *Server) openStore(w http.ResponseWriter, ref pipelineRef) (*cache.Store, bool) {
	root := s.storeRoot(ref)
	if _, err := os.Stat(root); err != nil {
		httpError(w, http.StatusNotFound, "board: pipeline %q has no store yet", ref.ID)
		return nil, false
	}
	st, err := cache.Open(root)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "board: %v", err)
		return nil, false
	}
	return st, true
}

// lookupRecord finds the cache record named by the "key" parameter.
func (s *Server) lookupRecord(w http.ResponseWriter, r *http.Request) (pipelineRef, *cache.Store, *cache.Record, bool) {
	ref, ok := s.lookup(w, r.URL.Query().Get("p"))
	if !ok {
		return ref, nil, nil, false
	}
	st, ok := s.openStore(w, ref)
	if !ok {
		return ref, nil, nil, false
	}
	rec, err := st.Lookup(r.URL.Query().Get("key"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "board: %v", err)
		return ref, nil, nil, false
	}
	if rec == nil {
		httpError(w, http.StatusNotFound, "board: no cached result for key %q", r.URL.Query().Get("key"))
		return ref, nil, nil, false
	}
	return ref, st, rec, true
}

func (s *Server) handleRecord(w http.ResponseWriter, r *http.Request) {
	_, _, rec, ok := s.lookupRecord(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// entry is one line of a directory listing.
type entry struct {
	Name string `json:"name"`
	Dir  bool   `json:"dir"`
	Size int64  `json:"size"`
}

// handleArtifact lists a directory of a committed artifact, or sends one
// of its files.
func (s *Server) handleArtifact(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.lookup(w, r.URL.Query().Get("p"))
	if !ok {
		return
	}
	digest := r.URL.Query().Get("digest")
	if !digestRE.MatchString(digest) {
		httpError(w, http.StatusBadRequest, "board: bad digest %q", digest)
		return
	}
	st, ok := s.openStore(w, ref)
	if !ok {
		return
	}
	serveTree(w, r, st.ArtifactPath(digest), "artifact")
}

// handleSource lists the pipeline's directory or sends one of its files.
func (s *Server) handleSource(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.lookup(w, r.URL.Query().Get("p"))
	if !ok {
		return
	}
	serveTree(w, r, ref.Dir, "pipeline directory")
}

// maxView bounds the files shown inline as text.
const maxView = 4 << 20

// serveTree answers for the "path" parameter inside base: a JSON listing
// for a directory; for a file, a download when the "download" parameter is
// set, else its text (UTF-8 files up to maxView bytes).
func serveTree(w http.ResponseWriter, r *http.Request, base, what string) {
	rel := r.URL.Query().Get("path")
	p, err := safeJoin(base, rel)
	switch {
	case errors.Is(err, errOutside):
		httpError(w, http.StatusForbidden, "board: %q is outside the %s", rel, what)
		return
	case errors.Is(err, os.ErrNotExist):
		httpError(w, http.StatusNotFound, "board: no %q in the %s", rel, what)
		return
	case err != nil:
		httpError(w, http.StatusInternalServerError, "board: %v", err)
		return
	}
	fi, err := os.Stat(p)
	if err != nil {
		httpError(w, http.StatusNotFound, "board: %v", err)
		return
	}
	if fi.IsDir() {
		ents, err := os.ReadDir(p)
		if err != nil {
			httpError(w, http.StatusInternalServerError, "board: %v", err)
			return
		}
		list := []entry{}
		for _, e := range ents {
			info, err := e.Info()
			if err != nil {
				continue
			}
			list = append(list, entry{Name: e.Name(), Dir: info.IsDir(), Size: info.Size()})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		writeJSON(w, http.StatusOK, map[string]any{"path": filepath.ToSlash(rel), "entries": list})
		return
	}
	if !fi.Mode().IsRegular() {
		httpError(w, http.StatusForbidden, "board: %q is not a regular file", rel)
		return
	}
	f, err := os.Open(p)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "board: %v", err)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	if r.URL.Query().Get("download") != "" {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": filepath.Base(p)}))
		http.ServeContent(w, r, "", fi.ModTime(), f)
		return
	}
	if fi.Size() > maxView {
		httpError(w, http.StatusRequestEntityTooLarge, "board: %q is %d bytes, too large to show; download it", rel, fi.Size())
		return
	}
	b, err := io.ReadAll(f)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "board: %v", err)
		return
	}
	if !utf8.Valid(b) {
		httpError(w, http.StatusUnsupportedMediaType, "board: %q is not text; download it", rel)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.Write(b)
}

// previewSample is one tokenized sample, decoded.
type previewSample struct {
	Index   int         `json:"index"`
	Label   string      `json:"label,omitempty"` // "chosen" / "rejected" for pairs
	Tokens  int         `json:"tokens"`
	Trained int         `json:"trained"`
	Spans   []data.Span `json:"spans"`
}

// maxPreview bounds how many samples a preview shows.
const maxPreview = 50

// handlePreview shows the first samples of a tokenize stage's committed
// training split as the model sees them: decoded with the stage's
// tokenizer, the trained tokens marked (like `lathe data preview`).
func (s *Server) handlePreview(w http.ResponseWriter, r *http.Request) {
	_, st, rec, ok := s.lookupRecord(w, r)
	if !ok {
		return
	}
	n := 5
	if v := r.URL.Query().Get("n"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 {
			httpError(w, http.StatusBadRequest, "board: bad n %q", v)
			return
		}
		n = min(k, maxPreview)
	}
	ds, okD := rec.Artifacts["dataset"]
	tk, okT := rec.Artifacts["tokenizer"]
	if rec.Kind != "tokenize" || !okD || !okT {
		httpError(w, http.StatusBadRequest, "board: %s is not a tokenize stage's result", rec.Address)
		return
	}
	m, samples, err := previewDataset(st.ArtifactPath(ds.Digest), st.ArtifactPath(tk.Digest), n)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "board: preview %s: %v", rec.Address, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"address": rec.Address, "manifest": m, "samples": samples})
}

// previewDataset decodes the first n samples of a dataset directory's
// training split with the tokenizer in tokDir.
func previewDataset(dsDir, tokDir string, n int) (*data.Manifest, []previewSample, error) {
	m, err := data.ReadManifest(dsDir)
	if err != nil {
		return nil, nil, err
	}
	tok, _, err := tokenizer.LoadDir(tokDir)
	if err != nil {
		return nil, nil, err
	}
	out := []previewSample{}
	sp := m.Splits["train"]
	if sp == nil {
		return m, out, nil
	}
	for _, si := range sp.Shards {
		if len(out) >= n {
			break
		}
		if !filepath.IsLocal(si.File) {
			return nil, nil, fmt.Errorf("manifest names shard %q outside the dataset", si.File)
		}
		sh, err := data.OpenShard(filepath.Join(dsDir, si.File))
		if err != nil {
			return nil, nil, err
		}
		pairs := sh.Flags()&data.FlagPairs != 0
		for i := 0; i < sh.NumSamples() && len(out) < n; i++ {
			smp := sh.Sample(i)
			ps := previewSample{Index: len(out) + 1, Tokens: len(smp.Tokens), Trained: smp.Trainable(), Spans: data.Spans(smp, func(ids []int) string { return tok.Decode(ids, false) })}
			if pairs {
				ps.Label = [2]string{"chosen", "rejected"}[i%2]
			}
			out = append(out, ps)
		}
		sh.Close()
	}
	return m, out, nil
}
