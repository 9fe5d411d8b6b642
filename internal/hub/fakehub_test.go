package hub

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeHub is a local stand-in for the Hub: the API and resolve endpoints on
// one host, LFS objects on a "CDN" on another host, with the headers the real
// Hub sends and injectable faults.

type fakeFile struct {
	data []byte
	lfs  bool
}

type fakeRepo struct {
	typ     RepoType
	id      string
	commit  string
	refs    map[string]string // branch/tag -> commit
	files   map[string]fakeFile
	private bool // 401 without the right token
	gated   bool // 403 GatedRepo even with a token
}

type recorded struct {
	host, method, path, auth, rng string
}

type fakeHub struct {
	t     *testing.T
	api   *httptest.Server
	cdn   *httptest.Server
	token string

	mu       sync.Mutex
	repos    map[string]*fakeRepo // "model/org/name"
	requests []recorded

	// faults, by file path (LFS objects and regular files alike)
	dropAfter   map[string]int64 // first GET of the file drops the connection after n bytes
	corrupt     map[string]bool  // serve wrong bytes
	tooMany     map[string]int   // answer 429 (Retry-After: retryAfter) this many times first
	retryAfter  string
	ignoreRange bool // answer 200 with the whole file to a Range request
	noBlobs     bool // the listing has no sizes or digests
}

func newFakeHub(t *testing.T) *fakeHub {
	h := &fakeHub{
		t:          t,
		repos:      map[string]*fakeRepo{},
		dropAfter:  map[string]int64{},
		corrupt:    map[string]bool{},
		tooMany:    map[string]int{},
		retryAfter: "1",
	}
	h.api = httptest.NewServer(http.HandlerFunc(h.serveAPI))
	h.cdn = httptest.NewServer(http.HandlerFunc(h.serveCDN))
	t.Cleanup(h.api.Close)
	t.Cleanup(h.cdn.Close)
	return h
}

func (h *fakeHub) add(r *fakeRepo) {
	if r.typ == "" {
		r.typ = Model
	}
	h.repos[string(r.typ)+"/"+r.id] = r
}

func (h *fakeHub) record(r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests = append(h.requests, recorded{host: r.Host, method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization"), rng: r.Header.Get("Range")})
}

func (h *fakeHub) reqs() []recorded {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]recorded(nil), h.requests...)
}

func gitSHA1(b []byte) string {
	s := sha1.New()
	fmt.Fprintf(s, "blob %d\x00", len(b))
	s.Write(b)
	return hex.EncodeToString(s.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// lfsPointer is the git content of an LFS file.
func lfsPointer(b []byte) []byte {
	return []byte(fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", sha256Hex(b), len(b)))
}

// lookup finds a repo and checks access like the Hub: a private repo is
// reported as not found with 401 to anonymous callers.
func (h *fakeHub) lookup(w http.ResponseWriter, r *http.Request, typ, id string) *fakeRepo {
	repo := h.repos[typ+"/"+id]
	auth := r.Header.Get("Authorization")
	if repo == nil || (repo.private && auth != "Bearer "+h.token) {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		w.Header().Set("X-Error-Message", "Repository not found")
		status := http.StatusNotFound
		if auth == "" {
			status = http.StatusUnauthorized // the Hub does not tell anonymous callers whether a repo exists
		}
		http.Error(w, "Repository not found", status)
		return nil
	}
	if repo.gated {
		w.Header().Set("X-Error-Code", "GatedRepo")
		w.Header().Set("X-Error-Message", "Access to model "+id+" is restricted. You must have access to it and be authenticated to access it. Please log in.")
		http.Error(w, "gated", http.StatusForbidden)
		return nil
	}
	return repo
}

func (repo *fakeRepo) resolve(rev string) (string, bool) {
	if rev == repo.commit {
		return rev, true
	}
	c, ok := repo.refs[rev]
	return c, ok
}

func (h *fakeHub) serveAPI(w http.ResponseWriter, r *http.Request) {
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

func (h *fakeHub) serveInfo(w http.ResponseWriter, r *http.Request, p string) {
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
	}{ID: repo.id, SHA: commit, Private: repo.private}
	for name, f := range repo.files {
		s := sib{RFilename: name}
		if r.URL.Query().Get("blobs") == "true" && !h.noBlobs {
			n := len(f.data)
			s.Size = &n
			if f.lfs {
				ptr := lfsPointer(f.data)
				s.BlobID = gitSHA1(ptr)
				s.LFS = &lfs{SHA256: sha256Hex(f.data), Size: len(f.data), PointerSize: len(ptr)}
			} else {
				s.BlobID = gitSHA1(f.data)
			}
		}
		body.Siblings = append(body.Siblings, s)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

func (h *fakeHub) serveResolve(w http.ResponseWriter, r *http.Request, p string) {
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
	f, ok := repo.files[file]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		w.Header().Set("X-Error-Message", "Entry not found")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	w.Header().Set("X-Repo-Commit", commit)
	if f.lfs {
		sum := sha256Hex(f.data)
		w.Header().Set("X-Linked-Etag", `"`+sum+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.data)))
		w.Header().Set("ETag", `"`+gitSHA1(lfsPointer(f.data))+`"`)
		w.Header().Set("Location", h.cdn.URL+"/repos/"+sum+"?X-Amz-Signature=secret&file="+url.QueryEscape(file))
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+gitSHA1(f.data)+`"`)
	h.serveBytes(w, r, file, f.data)
}

func (h *fakeHub) serveCDN(w http.ResponseWriter, r *http.Request) {
	h.record(r)
	sum := strings.TrimPrefix(r.URL.Path, "/repos/")
	file := r.URL.Query().Get("file")
	for _, repo := range h.repos {
		if f, ok := repo.files[file]; ok && f.lfs && sha256Hex(f.data) == sum {
			w.Header().Set("ETag", `"`+sum+`"`)
			h.serveBytes(w, r, file, f.data)
			return
		}
	}
	http.NotFound(w, r)
}

// serveBytes answers HEAD/GET with Range support and the injected faults.
func (h *fakeHub) serveBytes(w http.ResponseWriter, r *http.Request, file string, data []byte) {
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
