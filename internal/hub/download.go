package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// ChecksumError says a file's content is not what the Hub listed.
type ChecksumError struct {
	Path string
	Algo string // "sha256", "git-sha1" or "size"
	Want string
	Got  string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("hub: %s: %s mismatch: expected %s, got %s (the download was discarded)", e.Path, e.Algo, e.Want, e.Got)
}

// progressStep is how many bytes pass between two progress calls.
const progressStep = 1 << 20

// target is one file to fetch and what it must verify against.
type target struct {
	url   string
	repo  Repo
	rev   string
	file  FileInfo
	part  string // partial file path
	dst   string // final path
	onPro func(done, total int64)
}

// fetch downloads t.url into t.part, resuming what is there, verifies it and
// renames it to t.dst. On a verification failure the partial file is removed
// and nothing is written at t.dst.
func (c *Client) fetch(ctx context.Context, t target) error {
	if c.Offline {
		if t.repo.ID == "" {
			return fmt.Errorf("hub: GET %s: %w", redactString(t.url), ErrOffline)
		}
		return c.offlineErr(t.repo, t.rev, fmt.Sprintf("file %q is not", t.file.Path))
	}
	if err := os.MkdirAll(filepath.Dir(t.part), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	f, err := os.OpenFile(t.part, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("hub: opening partial download: %w", err)
	}
	defer f.Close()
	size := t.file.Size
	report := func(done int64) {
		if t.onPro != nil {
			t.onPro(done, size)
		}
	}
	r := retrier{c: c}
	for {
		have, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return fmt.Errorf("hub: %w", err)
		}
		if size >= 0 && have > size {
			if err := truncate(f); err != nil {
				return err
			}
			have = 0
		}
		if size >= 0 && have == size && size > 0 {
			break // complete from an earlier attempt: verify below
		}
		// identity: byte offsets for Range and the digests refer to the file
		// itself, not to a compressed transfer of it.
		hdr := http.Header{"Accept-Encoding": {"identity"}}
		if have > 0 {
			hdr.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
		}
		report(have)
		resp, err := c.do(ctx, http.MethodGet, t.url, hdr, t.repo, t.rev, t.file.Path)
		if err != nil {
			var he *HTTPError
			if errors.As(err, &he) && he.Status == http.StatusRequestedRangeNotSatisfiable {
				// Our partial is not a prefix the server can continue.
				if err := truncate(f); err != nil {
					return err
				}
				if werr := r.wait(ctx, 0, false, false, err); werr != nil {
					return werr
				}
				continue
			}
			return err
		}
		switch resp.StatusCode {
		case http.StatusPartialContent:
			start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
			if !ok || start != have {
				resp.Body.Close()
				if err := truncate(f); err != nil {
					return err
				}
				continue
			}
		case http.StatusOK:
			if have > 0 { // the server ignored Range: start over
				if err := truncate(f); err != nil {
					resp.Body.Close()
					return err
				}
				have = 0
			}
			if size < 0 && resp.ContentLength >= 0 {
				size = resp.ContentLength
			}
		default:
			resp.Body.Close()
			return fmt.Errorf("hub: GET %s: unexpected HTTP %d", redactString(t.url), resp.StatusCode)
		}
		n, cerr := copyProgress(ctx, f, resp.Body, have, report)
		resp.Body.Close()
		if cerr == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if werr := r.wait(ctx, 0, false, n > 0, fmt.Errorf("reading %s: %w", t.file.Path, cerr)); werr != nil {
			return fmt.Errorf("hub: GET %s: %w", redactString(t.url), werr)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	got, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	report(got)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := verify(f, t.file, got); err != nil {
		f.Close()
		os.Remove(t.part)
		return err
	}
	f.Close()
	return place(t.part, t.dst)
}

func truncate(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

var contentRangeRE = regexp.MustCompile(`^bytes (\d+)-\d+/(\d+|\*)$`)

func contentRangeStart(h string) (int64, bool) {
	m := contentRangeRE.FindStringSubmatch(strings.TrimSpace(h))
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	return n, err == nil
}

// copyProgress copies src to dst, reporting the running total (starting at
// base) every progressStep bytes. It returns the bytes copied.
func copyProgress(ctx context.Context, dst io.Writer, src io.Reader, base int64, report func(int64)) (int64, error) {
	buf := make([]byte, 256<<10)
	var n, last int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, rerr := src.Read(buf)
		if k > 0 {
			if _, err := dst.Write(buf[:k]); err != nil {
				return n, fmt.Errorf("writing: %w", err)
			}
			n += int64(k)
			if n-last >= progressStep {
				last = n
				report(base + n)
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// verify checks r (size bytes) against what the listing promised.
func verify(r io.Reader, f FileInfo, size int64) error {
	if f.Size >= 0 && size != f.Size {
		return &ChecksumError{Path: f.Path, Algo: "size", Want: strconv.FormatInt(f.Size, 10), Got: strconv.FormatInt(size, 10)}
	}
	var h hash.Hash
	var want, algo string
	switch {
	case f.SHA256 != "":
		h, want, algo = sha256.New(), f.SHA256, "sha256"
	case f.BlobID != "":
		h, want, algo = sha1.New(), f.BlobID, "git-sha1"
		fmt.Fprintf(h, "blob %d\x00", size)
	default:
		return nil
	}
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("hub: verifying %s: %w", f.Path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return &ChecksumError{Path: f.Path, Algo: algo, Want: want, Got: got}
	}
	return nil
}

// place moves a verified file to its destination, copying when the two are
// on different file systems (through a temporary name beside dst, so that a
// half copy never carries the final name).
func place(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	err := os.Rename(src, dst)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EXDEV) {
		return fmt.Errorf("hub: %w", err)
	}
	if err := copyFileAtomic(src, dst); err != nil {
		return err
	}
	return os.Remove(src)
}

// copyFileAtomic copies src to dst through a temporary file in dst's directory.
func copyFileAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst)+"-*")
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	_, err = io.Copy(tmp, in)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("hub: copying to %s: %w", dst, err)
	}
	return nil
}

// copyVerified copies a file from the HF cache to part, verifies it against
// f and moves it to dst.
func copyVerified(ctx context.Context, src, part, dst string, f FileInfo, report func(done, total int64)) error {
	if err := os.MkdirAll(filepath.Dir(part), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer in.Close()
	out, err := os.Create(part)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer out.Close()
	if report == nil {
		report = func(int64, int64) {}
	}
	n, err := copyProgress(ctx, out, in, 0, func(done int64) { report(done, f.Size) })
	if err == nil {
		_, err = out.Seek(0, io.SeekStart)
	}
	if err == nil {
		err = verify(out, f, n)
	}
	out.Close()
	if err != nil {
		os.Remove(part)
		return err
	}
	report(n, n)
	return place(part, dst)
}

// FetchURL downloads an arbitrary URL to dst, verified against sha256 (hex,
// required), resuming a partial download kept in partialDir. The token is
// only sent if the URL is on the Hub's own host.
func (c *Client) FetchURL(ctx context.Context, rawURL, sha256hex, dst, partialDir string, progress func(done, total int64)) error {
	sha256hex = strings.ToLower(strings.TrimPrefix(sha256hex, "sha256:"))
	if !sha256RE.MatchString(sha256hex) {
		return fmt.Errorf("hub: %s: sha256 %q is not 64 hex digits", redactString(rawURL), sha256hex)
	}
	if partialDir == "" {
		d, err := os.MkdirTemp("", "lathe-hub-")
		if err != nil {
			return fmt.Errorf("hub: %w", err)
		}
		defer os.RemoveAll(d)
		partialDir = d
	}
	return c.fetch(ctx, target{
		url:   rawURL,
		file:  FileInfo{Path: filepath.Base(dst), Size: -1, SHA256: sha256hex},
		part:  filepath.Join(partialDir, sha256hex+".part"),
		dst:   dst,
		onPro: progress,
	})
}
