package hub

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// This file reads an existing HF cache (the layout huggingface_hub writes):
//
//	<cache>/models--org--name/refs/main              commit sha of branch main
//	<cache>/models--org--name/snapshots/<commit>/... symlinks into blobs/
//	<cache>/models--org--name/blobs/<etag>           sha256 (LFS) or git sha1
//
// It never writes there.

var (
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	sha1RE   = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

// CacheRepoDir returns the directory of repo in the HF cache at dir.
func CacheRepoDir(dir string, repo Repo) string {
	return filepath.Join(dir, string(repo.typ())+"s--"+strings.ReplaceAll(repo.ID, "/", "--"))
}

func (c *Client) offlineErr(repo Repo, rev, what string) error {
	where := c.CacheDir
	if where == "" {
		where = "(no HF cache directory configured: set HF_HUB_CACHE or HF_HOME)"
	}
	return fmt.Errorf("hub: %s at revision %q: %s in the HF cache %s: %w; run once online, or pin the revision to a cached commit", repo, rev, what, where, ErrOffline)
}

// cachedCommit resolves rev through the HF cache's refs.
func (c *Client) cachedCommit(repo Repo, rev string) (string, error) {
	if c.CacheDir == "" {
		return "", c.offlineErr(repo, rev, "no ref")
	}
	dir := CacheRepoDir(c.CacheDir, repo)
	if IsCommit(rev) {
		if st, err := os.Stat(filepath.Join(dir, "snapshots", rev)); err == nil && st.IsDir() {
			return rev, nil
		}
		return "", c.offlineErr(repo, rev, "no snapshot of this commit")
	}
	if err := checkRelPath(rev); err != nil {
		return "", fmt.Errorf("hub: %s: invalid revision %q", repo, rev)
	}
	b, err := os.ReadFile(filepath.Join(dir, "refs", filepath.FromSlash(rev)))
	if err != nil {
		return "", c.offlineErr(repo, rev, "no ref")
	}
	commit := strings.TrimSpace(string(b))
	if !IsCommit(commit) {
		return "", fmt.Errorf("hub: %s: the HF cache ref %q holds %q, not a commit sha", repo, rev, commit)
	}
	return commit, nil
}

// cachedRepoInfo lists the files the HF cache holds for repo at rev.
func (c *Client) cachedRepoInfo(repo Repo, rev string) (*RepoInfo, error) {
	commit, err := c.cachedCommit(repo, rev)
	if err != nil {
		return nil, err
	}
	snap := filepath.Join(CacheRepoDir(c.CacheDir, repo), "snapshots", commit)
	info := &RepoInfo{Repo: repo, Rev: rev, Commit: commit}
	err = filepath.WalkDir(snap, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		st, err := os.Stat(p) // follows the symlink into blobs/
		if err != nil {
			return fmt.Errorf("broken cache entry %s: %w", p, err)
		}
		if !st.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(snap, p)
		f := FileInfo{Path: filepath.ToSlash(rel), Size: st.Size()}
		if target, err := os.Readlink(p); err == nil {
			switch etag := filepath.Base(target); {
			case sha256RE.MatchString(etag):
				f.SHA256 = etag
			case sha1RE.MatchString(etag):
				f.BlobID = etag
			}
		}
		info.Files = append(info.Files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hub: reading the HF cache for %s: %w", repo, err)
	}
	sort.Slice(info.Files, func(i, j int) bool { return info.Files[i].Path < info.Files[j].Path })
	return info, nil
}

// cachedFile returns the path of a file of repo at commit in the HF cache,
// if it is there.
func (c *Client) cachedFile(repo Repo, commit, path string) (string, bool) {
	if c.CacheDir == "" {
		return "", false
	}
	p := filepath.Join(CacheRepoDir(c.CacheDir, repo), "snapshots", commit, filepath.FromSlash(path))
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() {
		return "", false
	}
	return p, true
}
