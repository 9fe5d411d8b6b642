package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the Hub used when HF_ENDPOINT is not set.
const DefaultEndpoint = "https://huggingface.co"

// RepoType is the kind of a Hub repository.
type RepoType string

// The repository types this client handles.
const (
	Model   RepoType = "model"
	Dataset RepoType = "dataset"
)

// Repo names a Hub repository.
type Repo struct {
	Type RepoType
	ID   string // "org/name" (or "name" for legacy top-level repos)
}

func (r Repo) String() string { return string(r.typ()) + " " + r.ID }

func (r Repo) typ() RepoType {
	if r.Type == "" {
		return Model
	}
	return r.Type
}

// validate checks the repo id's shape so that it cannot escape URL paths or
// cache directories.
func (r Repo) validate() error {
	if t := r.typ(); t != Model && t != Dataset {
		return fmt.Errorf("hub: unknown repository type %q (want model or dataset)", r.Type)
	}
	parts := strings.Split(r.ID, "/")
	if r.ID == "" || len(parts) > 2 {
		return fmt.Errorf("hub: invalid repository id %q: want \"org/name\"", r.ID)
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "\\ ?#%") {
			return fmt.Errorf("hub: invalid repository id %q: want \"org/name\"", r.ID)
		}
	}
	return nil
}

// Client talks to one Hub endpoint. The zero value is not usable; build one
// with FromEnv or fill in the fields. A Client is safe for concurrent use
// once configured.
type Client struct {
	// Endpoint is the Hub's base URL, without a trailing slash.
	Endpoint string
	// Token is sent as "Authorization: Bearer <Token>" to Endpoint's host
	// only. Empty means anonymous.
	Token string
	// Offline forbids every network access (HF_HUB_OFFLINE=1).
	Offline bool
	// CacheDir is an existing HF cache to reuse read-only; empty disables it.
	CacheDir string
	// HTTP is the underlying client; nil means a default one. Its transport
	// is wrapped so that the token only reaches Endpoint's host.
	HTTP *http.Client
	// Parallel bounds concurrent file downloads (default 4).
	Parallel int
	// MaxAttempts bounds the attempts of one request that fails without
	// progress (default 6).
	MaxAttempts int
	// MaxWait bounds the total time one request spends waiting between
	// retries (default 2 minutes). A Retry-After beyond it fails at once.
	MaxWait time.Duration
	// BaseBackoff is the first retry delay, doubled each time (default 1s).
	BaseBackoff time.Duration
	// Sleep waits between retries; nil means a context-aware timer. Tests
	// replace it to record the waits instead of sleeping.
	Sleep func(ctx context.Context, d time.Duration) error
}

// FromEnv returns a client configured from the environment: HF_ENDPOINT,
// HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), HF_HUB_OFFLINE, HF_HUB_CACHE and
// HF_HOME.
func FromEnv() *Client {
	c := &Client{
		Endpoint: strings.TrimRight(os.Getenv("HF_ENDPOINT"), "/"),
		Token:    strings.TrimSpace(os.Getenv("HF_TOKEN")),
		Offline:  envTrue(os.Getenv("HF_HUB_OFFLINE")),
		CacheDir: DefaultCacheDir(),
	}
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	if c.Token == "" {
		c.Token = strings.TrimSpace(os.Getenv("HUGGING_FACE_HUB_TOKEN"))
	}
	return c
}

func envTrue(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// DefaultCacheDir returns the HF cache directory the environment names:
// HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub. It returns "" when no home directory is known.
func DefaultCacheDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("HF_HOME"); d != "" {
		return filepath.Join(d, "hub")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "huggingface", "hub")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".cache", "huggingface", "hub")
}

func (c *Client) endpoint() string {
	if c.Endpoint == "" {
		return DefaultEndpoint
	}
	return strings.TrimRight(c.Endpoint, "/")
}

func (c *Client) parallel() int {
	if c.Parallel > 0 {
		return c.Parallel
	}
	return 4
}

// httpClient returns the HTTP client with the token-adding transport.
// Redirects are followed for GET (to any host: the token is added per
// request by the transport, only for the endpoint's host); for HEAD only
// redirects within the endpoint's host are followed, as the reference client
// does, so that the Hub's own headers (X-Linked-Etag, ...) are read from its
// answer and not from the CDN's.
func (c *Client) httpClient() (*http.Client, error) {
	u, err := url.Parse(c.endpoint())
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("hub: invalid endpoint %q (HF_ENDPOINT)", c.endpoint())
	}
	base := http.DefaultClient
	if c.HTTP != nil {
		base = c.HTTP
	}
	rt := base.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc := *base
	hc.Transport = &authTransport{base: rt, host: u.Host, scheme: u.Scheme, token: c.Token}
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("too many redirects")
		}
		if req.Method == http.MethodHead && req.URL.Host != via[0].URL.Host {
			return http.ErrUseLastResponse
		}
		return nil
	}
	return &hc, nil
}

// authTransport adds the Authorization header to requests for the
// endpoint's own host and nothing else.
type authTransport struct {
	base   http.RoundTripper
	host   string
	scheme string
	token  string
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.token == "" || req.URL.Host != t.host || req.URL.Scheme != t.scheme {
		if req.Header.Get("Authorization") != "" {
			req = req.Clone(req.Context())
			req.Header.Del("Authorization")
		}
		return t.base.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(req)
}

// ErrOffline is returned (wrapped) when an operation needs the network and
// HF_HUB_OFFLINE is set.
var ErrOffline = errors.New("offline mode (HF_HUB_OFFLINE=1) and not in the local HF cache")

// Sentinel errors a *HTTPError matches with errors.Is.
var (
	ErrUnauthorized     = errors.New("unauthorized")
	ErrGated            = errors.New("gated repository")
	ErrRepoNotFound     = errors.New("repository not found")
	ErrRevisionNotFound = errors.New("revision not found")
	ErrEntryNotFound    = errors.New("file not found")
)

// HTTPError is a failed Hub answer. Its message says what to do about it;
// it never contains the token.
type HTTPError struct {
	Status int
	Code   string // the Hub's X-Error-Code, if any
	Repo   Repo
	Rev    string
	Path   string // the file, for file requests
	URL    string // the request URL (no credentials)
	Msg    string // the Hub's X-Error-Message, if any
	hasTok bool
	site   string
}

func (e *HTTPError) Error() string {
	var b strings.Builder
	switch {
	case e.Repo.ID == "":
		fmt.Fprintf(&b, "hub: %s: HTTP %d", e.URL, e.Status)
	case e.Code == "GatedRepo":
		fmt.Fprintf(&b, "hub: access to %s is restricted (HTTP %d): it is a gated repository; accept the licence on the repo page %s with the account whose token is in HF_TOKEN", e.Repo, e.Status, e.site)
	case e.Code == "RepoNotFound":
		fmt.Fprintf(&b, "hub: %s not found (HTTP %d): check the name; if it is private or gated, set HF_TOKEN to a token with read access", e.Repo, e.Status)
	case e.Code == "RevisionNotFound":
		fmt.Fprintf(&b, "hub: revision %q of %s not found (HTTP %d): check the branch, tag or commit", e.Rev, e.Repo, e.Status)
	case e.Code == "EntryNotFound" || (e.Status == http.StatusNotFound && e.Path != ""):
		fmt.Fprintf(&b, "hub: file %q not found in %s at revision %q (HTTP %d)", e.Path, e.Repo, e.Rev, e.Status)
	case e.Status == http.StatusNotFound:
		fmt.Fprintf(&b, "hub: %s or its revision %q not found (HTTP %d): check the name and the branch, tag or commit; if it is private, set HF_TOKEN", e.Repo, e.Rev, e.Status)
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		if e.hasTok {
			fmt.Fprintf(&b, "hub: access to %s denied (HTTP %d): the token in HF_TOKEN lacks read access; if the repo is gated, accept the licence on the repo page %s", e.Repo, e.Status, e.site)
		} else {
			fmt.Fprintf(&b, "hub: access to %s denied (HTTP %d): set HF_TOKEN to a token with read access; if the repo is gated, accept the licence on the repo page %s", e.Repo, e.Status, e.site)
		}
	default:
		fmt.Fprintf(&b, "hub: %s: HTTP %d", e.URL, e.Status)
	}
	if e.Msg != "" {
		fmt.Fprintf(&b, " (Hub says: %s)", e.Msg)
	}
	return b.String()
}

// Is lets errors.Is match the sentinel errors.
func (e *HTTPError) Is(target error) bool {
	switch target {
	case ErrGated:
		return e.Code == "GatedRepo"
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrRepoNotFound:
		return e.Code == "RepoNotFound"
	case ErrRevisionNotFound:
		return e.Code == "RevisionNotFound"
	case ErrEntryNotFound:
		return e.Code == "EntryNotFound" || (e.Status == http.StatusNotFound && e.Path != "" && e.Code == "")
	}
	return false
}

// newHTTPError builds the error for a non-2xx answer.
func (c *Client) newHTTPError(resp *http.Response, repo Repo, rev, path string) *HTTPError {
	site := c.endpoint() + "/" + repo.ID
	if repo.typ() == Dataset {
		site = c.endpoint() + "/datasets/" + repo.ID
	}
	msg := resp.Header.Get("X-Error-Message")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return &HTTPError{
		Status: resp.StatusCode,
		Code:   resp.Header.Get("X-Error-Code"),
		Repo:   repo,
		Rev:    rev,
		Path:   path,
		URL:    redactURL(resp.Request.URL),
		Msg:    msg,
		hasTok: c.Token != "",
		site:   site,
	}
}

// redactURL drops userinfo and the query (CDN URLs carry signatures).
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	v := *u
	v.User = nil
	v.RawQuery = ""
	return v.String()
}

// retryable reports whether an HTTP status is worth retrying.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// retryAfter parses a Retry-After header (seconds or an HTTP date).
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// retrier tracks the attempts and waits of one request.
type retrier struct {
	c        *Client
	attempts int
	waited   time.Duration
}

// wait decides whether to retry after a failure and sleeps if so. hint is
// the server's Retry-After (0 if none). progressed resets the attempt count:
// a download that keeps advancing is not failing.
func (r *retrier) wait(ctx context.Context, hint time.Duration, hasHint, progressed bool, cause error) error {
	maxAttempts := r.c.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = 6
	}
	maxWait := r.c.MaxWait
	if maxWait <= 0 {
		maxWait = 2 * time.Minute
	}
	base := r.c.BaseBackoff
	if base <= 0 {
		base = time.Second
	}
	if progressed {
		r.attempts = 0
	}
	r.attempts++
	if r.attempts >= maxAttempts {
		return fmt.Errorf("giving up after %d attempts: %w", r.attempts, cause)
	}
	d := base << (r.attempts - 1)
	if d > 30*time.Second {
		d = 30 * time.Second
	}
	if hasHint {
		d = hint
	}
	if r.waited+d > maxWait {
		return fmt.Errorf("giving up: retrying would wait %v, beyond the %v allowed: %w", r.waited+d, maxWait, cause)
	}
	r.waited += d
	sleep := r.c.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	return sleep(ctx, d)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
