// Package hubtest is a local stand-in for the Hugging Face Hub, for tests: an
// httptest server that answers the revision API, the resolve endpoints (HEAD
// and GET, with X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size, X-Error-Code)
// and redirects LFS files to a second "CDN" server on another host, with Range
// support and injectable faults (dropped connections, corrupt bytes, 429 with
// Retry-After, ignored Range, listings without sizes). It also writes fake HF
// cache directories laid out as huggingface_hub writes them.
//
// It is test support only: it holds everything in memory and is not a Hub.
package hubtest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// File is one file of a fake repository.
type File struct {
	Data []byte
	LFS  bool // served through a redirect to the CDN host, listed with its sha256
}

// Repo is a fake repository at one commit.
type Repo struct {
	Type    string            // "model" (default) or "dataset"
	ID      string            // "org/name"
	Commit  string            // 40 hex digits
	Refs    map[string]string // branch or tag -> commit
	Files   map[string]File
	Private bool // answered as not found (401 anonymous, 404 with a wrong token) without Server.Token
	Gated   bool // 403 with X-Error-Code GatedRepo, whatever the token
}

// Request is one request a server received.
type Request struct {
	Host, Method, Path, Auth, Range string
}

// Server is the fake Hub: API and resolve endpoints on API, LFS objects on
// CDN, a different host.
type Server struct {
	API   *httptest.Server
	CDN   *httptest.Server
	Token string // the token private repos accept

	mu       sync.Mutex
	repos    map[string]*Repo // "model/org/name"
	requests []Request

	// faults, by file path (LFS objects and regular files alike)
	dropAfter   map[string]int64 // first GET of the file drops the connection after n bytes
	corrupt     map[string]bool  // serve wrong bytes
	tooMany     map[string]int   // answer 429 (Retry-After: retryAfter) this many times first
	retryAfter  string
	ignoreRange bool // answer 200 with the whole file to a Range request
	noBlobs     bool // the listing has no sizes or digests
}

// New starts a fake Hub, closed when the test ends.
func New(t testing.TB) *Server {
	h := &Server{
		repos:      map[string]*Repo{},
		dropAfter:  map[string]int64{},
		corrupt:    map[string]bool{},
		tooMany:    map[string]int{},
		retryAfter: "1",
	}
	h.API = httptest.NewServer(http.HandlerFunc(h.serveAPI))
	h.CDN = httptest.NewServer(http.HandlerFunc(h.serveCDN))
	t.Cleanup(h.API.Close)
	t.Cleanup(h.CDN.Close)
	return h
}

// Add serves r.
func (h *Server) Add(r *Repo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Type == "" {
		r.Type = "model"
	}
	h.repos[r.Type+"/"+r.ID] = r
}

// DropAfter makes the next GET of file send n bytes, then drop the connection.
func (h *Server) DropAfter(file string, n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropAfter[file] = n
}

// Corrupt makes every GET of file send one wrong byte.
func (h *Server) Corrupt(file string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.corrupt[file] = true
}

// TooMany makes the next n GETs of file answer 429 with the given Retry-After.
func (h *Server) TooMany(file string, n int, retryAfter string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tooMany[file] = n
	h.retryAfter = retryAfter
}

// IgnoreRange makes the server answer Range requests with 200 and the whole file.
func (h *Server) IgnoreRange(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ignoreRange = on
}

// NoBlobs makes the listing omit sizes and digests, so a client must HEAD.
func (h *Server) NoBlobs(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.noBlobs = on
}

// APIHost and CDNHost are the two hosts ("127.0.0.1:port").
func (h *Server) APIHost() string { return strings.TrimPrefix(h.API.URL, "http://") }

// CDNHost is the host LFS downloads are redirected to.
func (h *Server) CDNHost() string { return strings.TrimPrefix(h.CDN.URL, "http://") }

func (h *Server) record(r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests = append(h.requests, Request{Host: r.Host, Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Range: r.Header.Get("Range")})
}

// Requests returns the requests received so far, in order.
func (h *Server) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Request(nil), h.requests...)
}

// GitSHA1 is the git blob id of b.
func GitSHA1(b []byte) string {
	s := sha1.New()
	fmt.Fprintf(s, "blob %d\x00", len(b))
	s.Write(b)
	return hex.EncodeToString(s.Sum(nil))
}

// SHA256Hex is the hex sha256 of b.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// LFSPointer is the git content of an LFS file.
func LFSPointer(b []byte) []byte {
	return []byte(fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", SHA256Hex(b), len(b)))
}

// lookup finds a repo and checks access like the Hub: a private repo is
// reported as not found with 401 to anonymous callers.
func (h *Server) lookup(w http.ResponseWriter, r *http.Request, typ, id string) *Repo {
	h.mu.Lock()
	repo := h.repos[typ+"/"+id]
	h.mu.Unlock()
	auth := r.Header.Get("Authorization")
	if repo == nil || (repo.Private && auth != "Bearer "+h.Token) {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		w.Header().Set("X-Error-Message", "Repository not found")
		status := http.StatusNotFound
		if auth == "" {
			status = http.StatusUnauthorized // the Hub does not tell anonymous callers whether a repo exists
		}
		http.Error(w, "Repository not found", status)
		return nil
	}
	if repo.Gated {
		w.Header().Set("X-Error-Code", "GatedRepo")
		w.Header().Set("X-Error-Message", "Access to model "+id+" is restricted. You must have access to it and be authenticated to access it. Please log in.")
		http.Error(w, "gated", http.StatusForbidden)
		return nil
	}
	return repo
}

func (repo *Repo) resolve(rev string) (string, bool) {
	if rev == repo.Commit {
		return rev, true
	}
	c, ok := repo.Refs[rev]
	return c, ok
}

func (h *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	h.record(r)
	p := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(p, "/api/"):
		h.serveInfo(w, r, strings.TrimPrefix(p, "/api/"))
	case strings.Contains(p, "/resolve/"):
		h.serveResolve(w, r, p)
	default:
		http.NotFound(w, r)
	}
}

func (h *Server) serveInfo(w http.ResponseWriter, r *http.Request, p string) {
	typ, rest, _ := strings.Cut(p, "/")
	typ = strings.TrimSuffix(typ, "s")
	i := strings.LastIndex(rest, "/revision/")
	if i < 0 || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	id := rest[:i]
	rev, err := url.PathUnescape(rest[i+len("/revision/"):])
	if err != nil {
		http.Error(w, "bad rev", 400)
		return
	}
	repo := h.lookup(w, r, typ, id)
	if repo == nil {
		return
	}
	commit, ok := repo.resolve(rev)
	if !ok {
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		w.Header().Set("X-Error-Message", "Invalid rev id: "+rev)
		http.Error(w, "Invalid rev id", http.StatusNotFound)
		return
	}
	type lfs struct {
		SHA256      string `json:"sha256"`
		Size        int    `json:"size"`
		PointerSize int    `json:"pointerSize"`
	}
	type sib struct {
		RFilename string `json:"rfilename"`
		Size      *int   `json:"size,omitempty"`
		BlobID    string `json:"blobId,omitempty"`
		LFS       *lfs   `json:"lfs,omitempty"`
	}
	body := struct {
		ID       string `json:"id"`
		SHA      string `json:"sha"`
		Private  bool   `json:"private"`
		Siblings []sib  `json:"siblings"`
	}{ID: repo.ID, SHA: commit, Private: repo.Private}
	h.mu.Lock()
	noBlobs := h.noBlobs
	h.mu.Unlock()
	for name, f := range repo.Files {
		s := sib{RFilename: name}
		if r.URL.Query().Get("blobs") == "true" && !noBlobs {
			n := len(f.Data)
			s.Size = &n
			if f.LFS {
				ptr := LFSPointer(f.Data)
				s.BlobID = GitSHA1(ptr)
				s.LFS = &lfs{SHA256: SHA256Hex(f.Data), Size: len(f.Data), PointerSize: len(ptr)}
			} else {
				s.BlobID = GitSHA1(f.Data)
			}
		}
		body.Siblings = append(body.Siblings, s)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

func (h *Server) serveResolve(w http.ResponseWriter, r *http.Request, p string) {
	typ := "model"
	if strings.HasPrefix(p, "/datasets/") {
		typ = "dataset"
		p = strings.TrimPrefix(p, "/datasets")
	}
	i := strings.Index(p, "/resolve/")
	id := strings.TrimPrefix(p[:i], "/")
	revEsc, fileEsc, _ := strings.Cut(p[i+len("/resolve/"):], "/")
	rev, _ := url.PathUnescape(revEsc)
	file, _ := url.PathUnescape(fileEsc)
	repo := h.lookup(w, r, typ, id)
	if repo == nil {
		return
	}
	commit, ok := repo.resolve(rev)
	if !ok {
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		http.Error(w, "Invalid rev id", http.StatusNotFound)
		return
	}
	f, ok := repo.Files[file]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		w.Header().Set("X-Error-Message", "Entry not found")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	w.Header().Set("X-Repo-Commit", commit)
	if f.LFS {
		sum := SHA256Hex(f.Data)
		w.Header().Set("X-Linked-Etag", `"`+sum+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.Data)))
		w.Header().Set("ETag", `"`+GitSHA1(LFSPointer(f.Data))+`"`)
		w.Header().Set("Location", h.CDN.URL+"/repos/"+sum+"?X-Amz-Signature=secret&file="+url.QueryEscape(file))
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+GitSHA1(f.Data)+`"`)
	h.serveBytes(w, r, file, f.Data)
}

func (h *Server) serveCDN(w http.ResponseWriter, r *http.Request) {
	h.record(r)
	sum := strings.TrimPrefix(r.URL.Path, "/repos/")
	file := r.URL.Query().Get("file")
	h.mu.Lock()
	repos := make([]*Repo, 0, len(h.repos))
	for _, r := range h.repos {
		repos = append(repos, r)
	}
	h.mu.Unlock()
	for _, repo := range repos {
		if f, ok := repo.Files[file]; ok && f.LFS && SHA256Hex(f.Data) == sum {
			w.Header().Set("ETag", `"`+sum+`"`)
			h.serveBytes(w, r, file, f.Data)
			return
		}
	}
	http.NotFound(w, r)
}

// serveBytes answers HEAD/GET with Range support and the injected faults.
func (h *Server) serveBytes(w http.ResponseWriter, r *http.Request, file string, data []byte) {
	h.mu.Lock()
	if n := h.tooMany[file]; n > 0 && r.Method == http.MethodGet {
		h.tooMany[file] = n - 1
		h.mu.Unlock()
		w.Header().Set("Retry-After", h.retryAfter)
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	}
	drop, dropping := h.dropAfter[file]
	if dropping && r.Method == http.MethodGet {
		delete(h.dropAfter, file)
	}
	if h.corrupt[file] {
		data = append([]byte(nil), data...)
		data[len(data)/2] ^= 0xff
	}
	ignoreRange := h.ignoreRange
	h.mu.Unlock()

	start := 0
	if rg := r.Header.Get("Range"); rg != "" && !ignoreRange {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		if err != nil || n >= len(data) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			http.Error(w, "range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start = n
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(data)-1, len(data)))
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)-start))
	w.Header().Set("Accept-Ranges", "bytes")
	if start > 0 {
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if r.Method == http.MethodHead {
		return
	}
	body := data[start:]
	if dropping && drop < int64(len(body)) {
		w.Write(body[:drop])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection drops mid-file
	}
	w.Write(body)
}

// WriteHFCache lays out r in an HF cache at dir as huggingface_hub does:
// <type>s--org--name/blobs/<etag> (sha256 for LFS files, git sha1 otherwise),
// snapshots/<commit>/<path> as relative symlinks to the blobs, and
// refs/<branch> holding the commit. With files given, only those are cached.
func WriteHFCache(dir string, r *Repo, branch string, files ...string) error {
	typ := r.Type
	if typ == "" {
		typ = "model"
	}
	root := filepath.Join(dir, typ+"s--"+strings.ReplaceAll(r.ID, "/", "--"))
	want := map[string]bool{}
	for _, f := range files {
		want[f] = true
	}
	for name, f := range r.Files {
		if len(files) > 0 && !want[name] {
			continue
		}
		etag := GitSHA1(f.Data)
		if f.LFS {
			etag = SHA256Hex(f.Data)
		}
		blob := filepath.Join(root, "blobs", etag)
		link := filepath.Join(root, "snapshots", r.Commit, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(blob, f.Data, 0o644); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		rel, err := filepath.Rel(filepath.Dir(link), blob)
		if err != nil {
			return err
		}
		if err := os.Symlink(rel, link); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "refs"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "refs", branch), []byte(r.Commit+"\n"), 0o644)
}
