package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DownloadOptions tunes Download.
type DownloadOptions struct {
	// Include keeps only the files matching one of these patterns (empty:
	// all); Exclude then drops the files matching one of its patterns.
	Include, Exclude []string
	// PartialDir holds partial downloads. A later Download with the same
	// directory resumes them. Empty means a temporary directory, removed
	// when Download returns.
	PartialDir string
	// OnPlan is called once the revision is resolved and the files are
	// chosen, before any is fetched (e.g. to learn the total size).
	OnPlan func(*Snapshot)
	// Progress is called as each file advances: bytes done of total (-1
	// when unknown). It is called from several goroutines at once.
	Progress func(path string, done, total int64)
	// FileDone is called once per file when it is in place, with where it
	// came from ("hub" or "hf-cache") and how long it took. It is called
	// from several goroutines at once.
	FileDone func(f FileInfo, source string, elapsed time.Duration)
}

// Snapshot is the result of a Download.
type Snapshot struct {
	Repo   Repo
	Rev    string
	Commit string
	// Files are the files written to the destination, sorted by path.
	Files []FileInfo
}

// TotalSize is the sum of the known file sizes.
func (s *Snapshot) TotalSize() int64 {
	var n int64
	for _, f := range s.Files {
		if f.Size > 0 {
			n += f.Size
		}
	}
	return n
}

// Plan resolves rev and returns the files Download would fetch, without
// fetching them.
func (c *Client) Plan(ctx context.Context, repo Repo, rev string, include, exclude []string) (*Snapshot, error) {
	for _, p := range append(append([]string{}, include...), exclude...) {
		if err := ValidatePattern(p); err != nil {
			return nil, fmt.Errorf("hub: include/exclude: %w", err)
		}
	}
	info, err := c.RepoInfo(ctx, repo, rev)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Repo: info.Repo, Rev: info.Rev, Commit: info.Commit}
	for _, f := range info.Files {
		if Selected(f.Path, include, exclude) {
			s.Files = append(s.Files, f)
		}
	}
	if len(s.Files) == 0 {
		where := "the repository has no files"
		if len(info.Files) > 0 {
			where = fmt.Sprintf("none of its %d files matches include %q / exclude %q", len(info.Files), include, exclude)
		}
		if c.Offline {
			where += " in the HF cache (offline mode)"
		}
		return nil, fmt.Errorf("hub: %s at %q (commit %s): nothing to download: %s", repo, info.Rev, info.Commit, where)
	}
	return s, nil
}

// Download fetches the files of repo at rev selected by the options into
// dest (created if needed), verified. Files the local HF cache holds for the
// resolved commit are copied from there; offline, only those are available.
// Files download in parallel, at most c.Parallel at a time; the first error
// cancels the rest. A file appears under dest only once verified.
func (c *Client) Download(ctx context.Context, repo Repo, rev, dest string, opts DownloadOptions) (*Snapshot, error) {
	s, err := c.Plan(ctx, repo, rev, opts.Include, opts.Exclude)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	partial := opts.PartialDir
	if partial == "" {
		d, err := os.MkdirTemp("", "lathe-hub-")
		if err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		defer os.RemoveAll(d)
		partial = d
	}

	// Fill in what the listing left out with a HEAD per file.
	if !c.Offline {
		for i, f := range s.Files {
			if f.Size >= 0 || f.SHA256 != "" || f.BlobID != "" {
				continue
			}
			m, err := c.FileMetadata(ctx, repo, s.Commit, f.Path)
			if err != nil {
				return nil, err
			}
			s.Files[i].Size = m.Size
			switch {
			case sha256RE.MatchString(m.ETag) && m.Location != "":
				s.Files[i].SHA256 = m.ETag
			case sha1RE.MatchString(m.ETag):
				s.Files[i].BlobID = m.ETag
			}
		}
	}

	if opts.OnPlan != nil {
		opts.OnPlan(s)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, c.parallel())
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, f := range s.Files {
		wg.Add(1)
		go func(f FileInfo) {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := c.downloadOne(ctx, s, f, dest, partial, opts); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		}(f)
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func (c *Client) downloadOne(ctx context.Context, s *Snapshot, f FileInfo, dest, partial string, opts DownloadOptions) error {
	start := time.Now()
	dst := filepath.Join(dest, filepath.FromSlash(f.Path))
	part := filepath.Join(partial, partName(s, f))
	var report func(done, total int64)
	if opts.Progress != nil {
		report = func(done, total int64) { opts.Progress(f.Path, done, total) }
	}
	done := func(source string) {
		if opts.FileDone != nil {
			opts.FileDone(f, source, time.Since(start))
		}
	}
	if src, ok := c.cachedFile(s.Repo, s.Commit, f.Path); ok {
		err := copyVerified(ctx, src, part, dst, f, report)
		if err == nil {
			done("hf-cache")
			return nil
		}
		var ce *ChecksumError
		if c.Offline || !errors.As(err, &ce) {
			return fmt.Errorf("hub: %s from the HF cache: %w", f.Path, err)
		}
		// A damaged cache entry: fetch the file from the Hub instead.
	}
	err := c.fetch(ctx, target{
		url:   c.ResolveURL(s.Repo, s.Commit, f.Path),
		repo:  s.Repo,
		rev:   s.Commit,
		file:  f,
		part:  part,
		dst:   dst,
		onPro: report,
	})
	if err != nil {
		return err
	}
	done("hub")
	return nil
}

// partName names a file's partial download after its path and its content
// digest (so a partial file of another version is never resumed, and two
// files with the same content never share one), else after its repository,
// commit and path.
func partName(s *Snapshot, f FileInfo) string {
	h := sha256.Sum256([]byte(strings.Join([]string{string(s.Repo.typ()), s.Repo.ID, f.Path}, "\x00")))
	p := hex.EncodeToString(h[:8])
	switch {
	case f.SHA256 != "":
		return p + "-" + f.SHA256 + ".part"
	case f.BlobID != "":
		return p + "-git-" + f.BlobID + ".part"
	}
	h = sha256.Sum256([]byte(s.Commit + "\x00" + f.Path))
	return p + "-" + hex.EncodeToString(h[:16]) + ".part"
}
