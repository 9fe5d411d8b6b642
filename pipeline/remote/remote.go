package remote

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// URLs
	_ "gocloud.dev/blob/s3blob"   // s3:// URLs (credentials from the AWS environment)
	"gocloud.dev/gcerrors"

	"github.com/lathe-ml/lathe/pipeline/cache"
)

// ErrCorrupt marks a remote object whose content does not match its record.
var ErrCorrupt = errors.New("remote object is corrupt")

// EnvVar names the environment variable that configures the remote cache.
const EnvVar = "LATHE_REMOTE_CACHE"

// Remote is an open remote store.
type Remote struct {
	url      string
	bucket   *blob.Bucket
	ReadOnly bool // Push does nothing when set
}

// Open opens the remote cache at rawURL: s3://bucket/prefix?region=...,
// gs://bucket/prefix, azblob://container/prefix or file:///dir. A path
// after the bucket (or a prefix parameter) puts every object under that
// prefix, so that one bucket can hold several caches. Credentials come
// only from each cloud's usual environment; looking for them gives up
// after a short time rather than hang. Errors name the URL without its
// query and never contain a secret from the environment.
func Open(ctx context.Context, rawURL string) (*Remote, error) {
	u, prefix, err := parseURL(rawURL)
	if err != nil {
		return nil, scrub(fmt.Errorf("remote: %w", err))
	}
	b, err := openBucket(ctx, u)
	if err != nil {
		// Drivers quote the URL they were given, query included.
		msg := strings.ReplaceAll(err.Error(), u.String(), redact(u.String()))
		return nil, scrub(fmt.Errorf("remote: open remote cache %s: %w", redact(rawURL), &scrubbed{msg: msg, err: err}))
	}
	if prefix != "" {
		b = blob.PrefixedBucket(b, prefix)
	}
	return &Remote{url: rawURL, bucket: b}, nil
}

// opener opens the bucket of a parsed URL (no prefix parameter left).
type opener func(ctx context.Context, u *url.URL) (*blob.Bucket, error)

// drivers holds the openers of gs:// and azblob://, which find their own
// credentials (see gcs.go, azure.go); other schemes go to gocloud's
// default URL mux.
var drivers = map[string]opener{}

func openBucket(ctx context.Context, u *url.URL) (*blob.Bucket, error) {
	if open, ok := drivers[u.Scheme]; ok {
		return open(ctx, u)
	}
	switch u.Scheme {
	case "gs", "azblob":
		return nil, fmt.Errorf("this lathe was built without the %s:// driver (build tag lathe_no%s)", u.Scheme, map[string]string{"gs": "gcs", "azblob": "azure"}[u.Scheme])
	}
	return blob.DefaultURLMux().OpenBucketURL(ctx, u)
}

// Close releases the bucket.
func (r *Remote) Close() error { return r.bucket.Close() }

// String is the URL without its query.
func (r *Remote) String() string { return redact(r.url) }

func recordKey(key string) string {
	return "records/" + key[:2] + "/" + key + ".json"
}

func artifactKey(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("bad artifact digest %q", digest)
	}
	return "artifacts/" + h + ".tar", nil
}

func validKey(key string) bool {
	return len(key) == 64 && strings.Trim(key, "0123456789abcdef") == ""
}

// Lookup reads the remote record of key; it returns nil, nil when absent.
func (r *Remote) Lookup(ctx context.Context, key string) (*cache.Record, error) {
	rec, err := r.lookup(ctx, key)
	return rec, scrub(err)
}

func (r *Remote) lookup(ctx context.Context, key string) (*cache.Record, error) {
	if !validKey(key) {
		return nil, fmt.Errorf("remote lookup: bad key %q", key)
	}
	data, err := r.bucket.ReadAll(ctx, recordKey(key))
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("remote lookup %.12s: %w", key, err)
	}
	var rec cache.Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("remote record %.12s: %w: %v", key, ErrCorrupt, err)
	}
	if rec.Key != key {
		return nil, fmt.Errorf("remote record %.12s: %w: names key %.12s", key, ErrCorrupt, rec.Key)
	}
	return &rec, nil
}

// Push uploads the committed record rec (and its artifacts from s):
// artifact objects first, the record last and only if none exists yet.
// It reports whether this call wrote the record.
func (r *Remote) Push(ctx context.Context, s *cache.Store, rec *cache.Record) (bool, error) {
	wrote, err := r.push(ctx, s, rec)
	return wrote, scrub(err)
}

func (r *Remote) push(ctx context.Context, s *cache.Store, rec *cache.Record) (bool, error) {
	if r.ReadOnly {
		return false, nil
	}
	if !validKey(rec.Key) {
		return false, fmt.Errorf("remote push: bad key %q", rec.Key)
	}
	if ok, err := r.bucket.Exists(ctx, recordKey(rec.Key)); err != nil {
		return false, fmt.Errorf("remote push %.12s: %w", rec.Key, err)
	} else if ok {
		return false, nil
	}
	for name, art := range rec.Artifacts {
		obj, err := artifactKey(art.Digest)
		if err != nil {
			return false, fmt.Errorf("remote push %.12s: %w", rec.Key, err)
		}
		if ok, err := r.bucket.Exists(ctx, obj); err != nil {
			return false, fmt.Errorf("remote push %s: %w", obj, err)
		} else if ok {
			continue // content-addressed: already there
		}
		var buf bytes.Buffer
		if err := packTree(&buf, s.ArtifactPath(art.Digest)); err != nil {
			return false, fmt.Errorf("remote push artifact %s: %w", name, err)
		}
		if err := r.bucket.WriteAll(ctx, obj, buf.Bytes(), &blob.WriterOptions{ContentType: "application/x-tar"}); err != nil {
			return false, fmt.Errorf("remote push artifact %s: %w", name, err)
		}
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return false, fmt.Errorf("remote push: encode record: %w", err)
	}
	err = r.bucket.WriteAll(ctx, recordKey(rec.Key), append(data, '\n'), &blob.WriterOptions{ContentType: "application/json", IfNotExist: true})
	if gcerrors.Code(err) == gcerrors.FailedPrecondition {
		return false, nil // another writer won the race; its record is as good
	}
	if err != nil {
		return false, fmt.Errorf("remote push record %.12s: %w", rec.Key, err)
	}
	return true, nil
}

// Pull fetches the remote entry of key into s, verifying every tree's
// digest before committing. It returns nil, nil when the remote lacks key.
func (r *Remote) Pull(ctx context.Context, s *cache.Store, key string) (*cache.Record, error) {
	rec, err := r.pull(ctx, s, key)
	return rec, scrub(err)
}

func (r *Remote) pull(ctx context.Context, s *cache.Store, key string) (*cache.Record, error) {
	rec, err := r.lookup(ctx, key)
	if err != nil || rec == nil {
		return nil, err
	}
	st, err := s.NewStaging()
	if err != nil {
		return nil, fmt.Errorf("remote pull %.12s: %w", key, err)
	}
	defer st.Discard()
	var names []string
	for name, art := range rec.Artifacts {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
			return nil, fmt.Errorf("remote pull %.12s: %w: bad artifact name %q", key, ErrCorrupt, name)
		}
		obj, err := artifactKey(art.Digest)
		if err != nil {
			return nil, fmt.Errorf("remote pull %.12s: %w: %v", key, ErrCorrupt, err)
		}
		rd, err := r.bucket.NewReader(ctx, obj, nil)
		if err != nil {
			return nil, fmt.Errorf("remote pull %.12s: artifact %s: %w", key, name, err)
		}
		dir := filepath.Join(st.Dir, name)
		err = unpackTree(rd, dir)
		rd.Close()
		if err != nil {
			return nil, fmt.Errorf("remote pull %.12s: %s: %w: %v", key, obj, ErrCorrupt, err)
		}
		got, err := cache.HashTree(dir)
		if err != nil {
			return nil, fmt.Errorf("remote pull %.12s: %s: %w: %v", key, obj, ErrCorrupt, err)
		}
		if got.Digest != art.Digest {
			return nil, fmt.Errorf("remote pull %.12s: %s: %w: tree digest %s, record says %s", key, obj, ErrCorrupt, got.Digest, art.Digest)
		}
		names = append(names, name)
	}
	out, err := s.Commit(st, names, *rec)
	if err != nil {
		return nil, fmt.Errorf("remote pull %.12s: %w", key, err)
	}
	return out, nil
}

// packTree writes the tree at dir as a tar stream: directories, regular
// files (mode 0755 when executable, else 0644) and relative symlinks.
func packTree(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755})
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: rel, Linkname: target, Mode: 0o777})
		case d.Type().IsRegular():
			mode := int64(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Size: info.Size(), Mode: mode}); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		default:
			return fmt.Errorf("%s: unsupported file type %v", rel, d.Type())
		}
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// unpackTree extracts a tar stream made by packTree into dir, refusing
// entries that would land outside dir.
func unpackTree(r io.Reader, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	links := map[string]bool{} // symlinks extracted so far: never written through
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(h.Name, "/")
		clean := path.Clean(name)
		if clean != name || clean == "." || strings.HasPrefix(clean, "../") || clean == ".." || path.IsAbs(clean) {
			return fmt.Errorf("bad path %q in archive", h.Name)
		}
		for parent := path.Dir(clean); parent != "."; parent = path.Dir(parent) {
			if links[parent] {
				return fmt.Errorf("entry %q lies below the symbolic link %q", h.Name, parent)
			}
		}
		p := filepath.Join(dir, filepath.FromSlash(clean))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeSymlink:
			target := path.Join(path.Dir(clean), h.Linkname)
			if path.IsAbs(h.Linkname) || target == ".." || strings.HasPrefix(target, "../") {
				return fmt.Errorf("symbolic link %q -> %q leaves the tree", h.Name, h.Linkname)
			}
			links[clean] = true
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("unsupported entry %q type %c", h.Name, h.Typeflag)
		}
	}
}
