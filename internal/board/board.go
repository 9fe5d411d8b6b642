package board

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

//go:embed assets
var assets embed.FS

// Options configures a board.
type Options struct {
	// Dir is the directory whose pipelines the board shows: Dir/pipeline.hcl
	// and Dir/<sub>/pipeline.hcl. Preview commands name pipelines by Dir as
	// given joined with the subdirectory.
	Dir string
	// Registry holds the stage kinds (stages.Registry()).
	Registry *stage.Registry
	// CacheDir is the store every pipeline uses; "" means each pipeline's
	// default ($LATHE_CACHE, else .lathe beside it).
	CacheDir string
	// Env is the environment that LATHE_VAR_<name> values are read from,
	// as for `lathe run` (os.Environ()).
	Env []string
	// Jobs bounds how many stages of a run run at once (default 2).
	Jobs int
	// Remote is set when the board listens beyond loopback: every request,
	// reads included, then needs the token.
	Remote bool
	// Token is the secret of state-changing requests (and of every request
	// when Remote); "" makes a random one.
	Token string
	// GPUs is the machine's GPUs for stages that ask for some (as
	// pipeline.Workspace.GPUs); nil when the board has none to give.
	GPUs pipeline.GPUs
}

// Server is a board: an http.Handler.
type Server struct {
	opt   Options
	root  string // Dir, absolute
	token string
	mux   *http.ServeMux
	cop   *http.CrossOriginProtection
	index *template.Template

	ctx    context.Context // parent of the runs the board starts
	cancel context.CancelFunc
	mu     sync.Mutex
	active map[string]*activeRun // by run id
	wg     sync.WaitGroup
}

// TokenHeader is the request header that carries the token.
const TokenHeader = "X-Lathe-Token"

// cookieName is the cookie holding the token beyond loopback.
const cookieName = "lathe_board"

// maxBody bounds the JSON bodies of POST requests.
const maxBody = 1 << 20

// New returns a board over the pipelines of opt.Dir.
func New(opt Options) (*Server, error) {
	if opt.Registry == nil {
		return nil, errors.New("board: no stage registry")
	}
	if opt.Dir == "" {
		opt.Dir = "."
	}
	if opt.Jobs < 1 {
		opt.Jobs = 2
	}
	root, err := filepath.Abs(opt.Dir)
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("board: %s is not a directory", opt.Dir)
	}
	token := opt.Token
	if token == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("board: token: %w", err)
		}
		token = hex.EncodeToString(b)
	}
	index, err := template.ParseFS(assets, "assets/index.html")
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opt: opt, root: root, token: token,
		mux: http.NewServeMux(), cop: http.NewCrossOriginProtection(), index: index,
		ctx: ctx, cancel: cancel, active: map[string]*activeRun{},
	}
	static, _ := fs.Sub(assets, "assets")
	s.mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /{$}", s.handleIndex)
	s.mux.HandleFunc("GET /api/pipelines", s.handlePipelines)
	s.mux.HandleFunc("GET /api/pipeline", s.handlePipeline)
	s.mux.HandleFunc("POST /api/plan", s.handlePlan)
	s.mux.HandleFunc("GET /api/runs", s.handleRuns)
	s.mux.HandleFunc("POST /api/runs", s.handleStart)
	s.mux.HandleFunc("POST /api/runs/cancel", s.handleCancel)
	s.mux.HandleFunc("GET /api/run", s.handleRun)
	s.mux.HandleFunc("GET /api/events", s.handleEvents)
	s.mux.HandleFunc("GET /api/metrics", s.handleMetrics)
	s.mux.HandleFunc("GET /api/record", s.handleRecord)
	s.mux.HandleFunc("GET /api/artifact", s.handleArtifact)
	s.mux.HandleFunc("GET /api/source", s.handleSource)
	s.mux.HandleFunc("GET /api/preview", s.handlePreview)
	return s, nil
}

// Token is the board's secret: embedded in its page, and in the URL
// printed when it listens beyond loopback.
func (s *Server) Token() string { return s.token }

// Close cancels the runs the board started and waits for them to stop.
func (s *Server) Close() {
	s.cancel()
	s.wg.Wait()
}

// ServeHTTP checks where a request comes from and what it carries, then
// routes it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	if !s.opt.Remote && !loopbackHost(r.Host) {
		httpError(w, http.StatusForbidden, "board: the Host %q is not a loopback name; open the board at 127.0.0.1 or localhost", r.Host)
		return
	}
	if s.opt.Remote && !s.hasCookie(r) {
		// The printed URL carries the token once; it is swapped for a
		// cookie and dropped from the address bar.
		if q := r.URL.Query().Get("token"); q != "" && r.Method == http.MethodGet && r.URL.Path == "/" && s.validToken(q) {
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		httpError(w, http.StatusForbidden, "board: open the URL with the token that `lathe ui` printed")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := s.cop.Check(r); err != nil {
			httpError(w, http.StatusForbidden, "board: cross-origin request refused")
			return
		}
		if !s.validToken(r.Header.Get(TokenHeader)) {
			httpError(w, http.StatusForbidden, "board: missing or wrong %s header", TokenHeader)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) validToken(t string) bool {
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

func (s *Server) hasCookie(r *http.Request) bool {
	c, err := r.Cookie(cookieName)
	return err == nil && s.validToken(c.Value)
}

// loopbackHost reports whether a Host header names the loopback interface.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	if err := s.index.Execute(&b, map[string]string{"Token": s.token}); err != nil {
		httpError(w, http.StatusInternalServerError, "board: page: %v", err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

// apiError is the JSON body of every error response.
type apiError struct {
	Error string `json:"error"`
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, apiError{Error: fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(apiError{Error: "board: encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// readJSON decodes a request body into v, refusing unknown fields.
func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("board: bad request body: %w", err)
	}
	return nil
}
