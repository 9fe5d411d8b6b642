package remote

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Schemes lists the URL schemes of remote caches.
var Schemes = []string{"s3", "gs", "azblob", "file"}

// parseURL checks a remote cache URL and splits off its key prefix: the
// path of a bucket URL (s3://bucket/team/lathe gives "team/lathe/") or its
// prefix parameter. The returned URL has neither.
func parseURL(raw string) (*url.URL, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, "", fmt.Errorf("bad remote cache URL %q: %v", redact(raw), err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if !slices.Contains(Schemes, u.Scheme) {
		return nil, "", fmt.Errorf("remote cache URL %q: the scheme must be s3://, gs://, azblob:// or file://", redact(raw))
	}
	if u.User != nil {
		return nil, "", fmt.Errorf("remote cache URL %q carries a user name or password: credentials come from each cloud's usual environment, never from the URL", redact(raw))
	}
	q := u.Query()
	if q.Has("key") {
		return nil, "", fmt.Errorf("remote cache URL %q: the key parameter would confine the cache to one object", redact(raw))
	}
	prefix := q.Get("prefix")
	q.Del("prefix")
	switch u.Scheme {
	case "file":
		if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !strings.HasPrefix(u.Path, "/") {
			return nil, "", fmt.Errorf("remote cache URL %q: a file:// cache needs an absolute directory, as in file:///srv/lathe-cache", redact(raw))
		}
	default:
		if u.Host == "" {
			return nil, "", fmt.Errorf("remote cache URL %q names no bucket: write %s://bucket/prefix", redact(raw), u.Scheme)
		}
		if p := strings.Trim(u.Path, "/"); p != "" {
			if prefix != "" {
				return nil, "", fmt.Errorf("remote cache URL %q gives a prefix twice, as a path and as ?prefix=", redact(raw))
			}
			prefix = p
		}
		u.Path, u.RawPath = "", ""
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	u.RawQuery = q.Encode()
	return u, prefix, nil
}

// redact drops the query, fragment and any user information of a URL, so
// that option values and credentials never reach logs.
func redact(raw string) string {
	s, _, _ := strings.Cut(raw, "?")
	s, _, _ = strings.Cut(s, "#")
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			s = s[:i+3] + rest[at+1:]
		}
	}
	return s
}
