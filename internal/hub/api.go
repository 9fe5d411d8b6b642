package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// FileInfo describes one file of a repository at a commit.
type FileInfo struct {
	Path string // relative, '/'-separated
	Size int64  // bytes; -1 if unknown
	// BlobID is the git blob sha1 (hex) of the file as stored in git: for an
	// LFS file that is the pointer's, so it is only checked for non-LFS files.
	BlobID string
	// SHA256 is the LFS object's sha256 (hex); empty for non-LFS files.
	SHA256 string
}

// IsLFS reports whether the file is stored in LFS (has a sha256).
func (f FileInfo) IsLFS() bool { return f.SHA256 != "" }

// RepoInfo is a repository at a resolved commit.
type RepoInfo struct {
	Repo   Repo
	Rev    string // the revision asked for
	Commit string // the commit sha it resolved to
	Files  []FileInfo
}

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// IsCommit reports whether rev is a full commit sha.
func IsCommit(rev string) bool { return commitRE.MatchString(rev) }

func (c *Client) apiURL(repo Repo, rev string) string {
	return fmt.Sprintf("%s/api/%ss/%s/revision/%s?blobs=true", c.endpoint(), repo.typ(), repo.ID, url.PathEscape(rev))
}

// ResolveURL returns the URL the Hub serves a file of a repository from.
func (c *Client) ResolveURL(repo Repo, rev, path string) string {
	prefix := ""
	if repo.typ() == Dataset {
		prefix = "/datasets"
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return fmt.Sprintf("%s%s/%s/resolve/%s/%s", c.endpoint(), prefix, repo.ID, url.PathEscape(rev), strings.Join(segs, "/"))
}

func normRev(rev string) string {
	if rev == "" {
		return "main"
	}
	return rev
}

// RepoInfo resolves rev (a branch, tag or commit; "" means "main") and lists
// the repository's files with their sizes and digests. Offline, it answers
// from the local HF cache.
func (c *Client) RepoInfo(ctx context.Context, repo Repo, rev string) (*RepoInfo, error) {
	rev = normRev(rev)
	if err := repo.validate(); err != nil {
		return nil, err
	}
	if c.Offline {
		return c.cachedRepoInfo(repo, rev)
	}
	var body struct {
		SHA      string `json:"sha"`
		Siblings []struct {
			RFilename string `json:"rfilename"`
			Size      *int64 `json:"size"`
			BlobID    string `json:"blobId"`
			LFS       *struct {
				SHA256 string `json:"sha256"`
				Size   int64  `json:"size"`
			} `json:"lfs"`
		} `json:"siblings"`
	}
	if err := c.getJSON(ctx, c.apiURL(repo, rev), repo, rev, &body); err != nil {
		return nil, err
	}
	if !IsCommit(body.SHA) {
		return nil, fmt.Errorf("hub: %s at %q: the Hub answered without a valid commit sha (%q)", repo, rev, body.SHA)
	}
	info := &RepoInfo{Repo: repo, Rev: rev, Commit: body.SHA}
	for _, s := range body.Siblings {
		if err := checkRelPath(s.RFilename); err != nil {
			return nil, fmt.Errorf("hub: %s lists an unsafe file name: %w", repo, err)
		}
		f := FileInfo{Path: s.RFilename, Size: -1, BlobID: strings.ToLower(s.BlobID)}
		if s.Size != nil {
			f.Size = *s.Size
		}
		if s.LFS != nil && s.LFS.SHA256 != "" {
			f.SHA256 = strings.ToLower(s.LFS.SHA256)
			f.Size = s.LFS.Size
		}
		info.Files = append(info.Files, f)
	}
	return info, nil
}

// ResolveRevision returns the commit sha rev points to. A full commit sha is
// returned as is, without asking the Hub. Offline it reads the HF cache's refs.
func (c *Client) ResolveRevision(ctx context.Context, repo Repo, rev string) (string, error) {
	rev = normRev(rev)
	if err := repo.validate(); err != nil {
		return "", err
	}
	if IsCommit(rev) {
		return rev, nil
	}
	if c.Offline {
		return c.cachedCommit(repo, rev)
	}
	info, err := c.RepoInfo(ctx, repo, rev)
	if err != nil {
		return "", err
	}
	return info.Commit, nil
}

// FileMeta is what a HEAD on a file's resolve URL tells.
type FileMeta struct {
	Commit string // X-Repo-Commit
	ETag   string // X-Linked-Etag or ETag, unquoted: sha256 for LFS, git sha1 otherwise
	Size   int64  // X-Linked-Size or Content-Length; -1 if unknown
	// Location is where a GET is redirected (a CDN URL for LFS files), or "".
	Location string
}

// FileMetadata asks the Hub about one file with a HEAD request, as the
// reference client does before a download.
func (c *Client) FileMetadata(ctx context.Context, repo Repo, rev, path string) (*FileMeta, error) {
	rev = normRev(rev)
	if err := repo.validate(); err != nil {
		return nil, err
	}
	if err := checkRelPath(path); err != nil {
		return nil, err
	}
	if c.Offline {
		return nil, fmt.Errorf("hub: HEAD %s %q: %w", repo, path, ErrOffline)
	}
	resp, err := c.do(ctx, http.MethodHead, c.ResolveURL(repo, rev, path), nil, repo, rev, path)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	m := &FileMeta{Commit: resp.Header.Get("X-Repo-Commit"), Size: -1}
	m.ETag = normETag(resp.Header.Get("X-Linked-Etag"))
	if m.ETag == "" {
		m.ETag = normETag(resp.Header.Get("ETag"))
	}
	sz := resp.Header.Get("X-Linked-Size")
	if sz == "" {
		sz = resp.Header.Get("Content-Length")
	}
	if n, err := strconv.ParseInt(sz, 10, 64); err == nil {
		m.Size = n
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		if loc, err := resp.Location(); err == nil {
			m.Location = loc.String()
		}
	}
	return m, nil
}

func normETag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	return strings.Trim(s, `"`)
}

// getJSON GETs url with retries and decodes a JSON answer.
func (c *Client) getJSON(ctx context.Context, u string, repo Repo, rev string, out any) error {
	resp, err := c.do(ctx, http.MethodGet, u, nil, repo, rev, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(out); err != nil {
		return fmt.Errorf("hub: %s at %q: decoding the Hub's answer: %w", repo, rev, err)
	}
	return nil
}

// do sends one request, retrying 429, 5xx and transport errors. A 2xx or 3xx
// answer is returned with its body open; anything else becomes an error.
func (c *Client) do(ctx context.Context, method, u string, hdr http.Header, repo Repo, rev, path string) (*http.Response, error) {
	hc, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	r := retrier{c: c}
	for {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, fmt.Errorf("hub: building request for %s: %w", repo, err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", "lathe")
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if werr := r.wait(ctx, 0, false, false, err); werr != nil {
				if ctx.Err() != nil {
					return nil, werr
				}
				return nil, fmt.Errorf("hub: %s %s: %w (no network? HF_HUB_OFFLINE=1 works from the local HF cache)", method, redactString(u), werr)
			}
			continue
		}
		if resp.StatusCode < 400 {
			return resp, nil
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		herr := c.newHTTPError(resp, repo, rev, path)
		if !retryable(resp.StatusCode) {
			return nil, herr
		}
		hint, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now())
		if werr := r.wait(ctx, hint, ok, false, herr); werr != nil {
			return nil, werr
		}
	}
}

func redactString(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(invalid url)"
	}
	return redactURL(p)
}

// checkRelPath rejects paths that could escape a destination directory.
func checkRelPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || strings.Contains(p, "\x00") {
		return fmt.Errorf("invalid file path %q", p)
	}
	for _, s := range strings.Split(p, "/") {
		if s == "" || s == "." || s == ".." {
			return fmt.Errorf("invalid file path %q", p)
		}
	}
	return nil
}
