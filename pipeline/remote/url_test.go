package remote

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		raw            string
		url, prefix    string // the URL handed to the driver, the key prefix
		err            string // a substring of the error, or ""
		errMustNotHave string
	}{
		{raw: "s3://bucket", url: "s3://bucket"},
		{raw: "s3://bucket/", url: "s3://bucket"},
		{raw: "s3://bucket/team/lathe?region=eu-west-1", url: "s3://bucket?region=eu-west-1", prefix: "team/lathe/"},
		{raw: "S3://bucket/team/lathe/", url: "s3://bucket", prefix: "team/lathe/"},
		{raw: "gs://bucket?prefix=ci", url: "gs://bucket", prefix: "ci/"},
		{raw: "azblob://container/x?storage_account=acct", url: "azblob://container?storage_account=acct", prefix: "x/"},
		{raw: "file:///srv/cache", url: "file:///srv/cache"},
		{raw: "file:///srv/cache?prefix=a/b/", url: "file:///srv/cache", prefix: "a/b/"},
		{raw: "gcs://bucket", err: "scheme must be s3://, gs://, azblob:// or file://"},
		{raw: "bucket/prefix", err: "scheme must be"},
		{raw: "s3://bucket name", err: "bad remote cache URL"},
		{raw: "s3:///prefix", err: "names no bucket"},
		{raw: "s3://AKIAXX:supersecret@bucket", err: "carries a user name or password", errMustNotHave: "supersecret"},
		{raw: "file://relative/dir", err: "absolute directory"},
		{raw: "s3://bucket/a?prefix=b", err: "prefix twice"},
		{raw: "s3://bucket?key=one", err: "one object"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, prefix, err := parseURL(tt.raw)
			if tt.err != "" {
				if err == nil {
					t.Fatalf("accepted as %v, want an error containing %q", u, tt.err)
				}
				if !strings.Contains(err.Error(), tt.err) || tt.errMustNotHave != "" && strings.Contains(err.Error(), tt.errMustNotHave) {
					t.Fatalf("error %q, want %q without %q", err, tt.err, tt.errMustNotHave)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.String() != tt.url || prefix != tt.prefix {
				t.Errorf("got %s prefix %q, want %s prefix %q", u, prefix, tt.url, tt.prefix)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"s3://bucket/p?region=x&endpoint=http://h", "s3://bucket/p"},
		{"s3://key:secret@bucket/p?x=1", "s3://bucket/p"},
		{"gs://bucket#frag", "gs://bucket"},
		{"file:///srv/cache", "file:///srv/cache"},
		{"not a url ? at all", "not a url "},
	}
	for _, tt := range tests {
		if got := redact(tt.in); got != tt.want {
			t.Errorf("redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestScrubRemovesSecrets(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
	t.Setenv("AZURE_STORAGE_SAS_TOKEN", "sv=2022-11-02&ss=b&sig=c2lnbmF0dXJlLXNlY3JldA%3D%3D")
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5LXNlY3JldC12YWx1ZQ==")
	t.Setenv("AWS_SESSION_TOKEN", "short") // too short to hide: it would garble words
	msg := "GET https://acct.blob.core.windows.net/c?sv=2022-11-02&ss=b&sig=c2lnbmF0dXJlLXNlY3JldA%3D%3D: 403; " +
		"key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY; AccountKey=a2V5LXNlY3JldC12YWx1ZQ==; " +
		"X-Amz-Signature=abcdef0123456789&X-Amz-Credential=AKIA/2024; a short story"
	got := scrubText(msg)
	for _, secret := range []string{"c2lnbmF0dXJlLXNlY3JldA", "wJalrXUtnFEMI", "a2V5LXNlY3JldC12YWx1ZQ", "abcdef0123456789", "AKIA/2024"} {
		if strings.Contains(got, secret) {
			t.Errorf("scrubbed message still holds %q: %s", secret, got)
		}
	}
	if !strings.Contains(got, "a short story") || !strings.Contains(got, "acct.blob.core.windows.net/c") {
		t.Errorf("scrubbing removed ordinary text: %s", got)
	}

	base := errors.New("AccountKey=a2V5LXNlY3JldC12YWx1ZQ== rejected")
	err := scrub(errors.Join(ErrCorrupt, base))
	if strings.Contains(err.Error(), "a2V5LXNlY3JldC12YWx1ZQ") || !errors.Is(err, ErrCorrupt) || !errors.Is(err, base) {
		t.Errorf("scrub(err) = %q; it must hide the key and still unwrap", err)
	}
	if scrub(nil) != nil {
		t.Error("scrub(nil) is not nil")
	}
}

// TestPathIsPrefix checks that s3://bucket/team/lathe keeps every object
// under team/lathe/, so that one bucket can hold several caches.
func TestPathIsPrefix(t *testing.T) {
	ctx := context.Background()
	backend := s3mem.New()
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	if err := backend.CreateBucket("lathe"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	query := "?region=us-east-1&use_path_style=true&endpoint=" + srv.URL
	team, err := Open(ctx, "s3://lathe/team/ml"+query)
	if err != nil {
		t.Fatal(err)
	}
	defer team.Close()
	if got := team.String(); got != "s3://lathe/team/ml" {
		t.Errorf("String() = %q", got)
	}
	a := openStore(t)
	rec := commitLocal(t, a, "prefixed", files)
	if wrote, err := team.Push(ctx, a, rec); err != nil || !wrote {
		t.Fatalf("push = %v, %v", wrote, err)
	}
	root, err := Open(ctx, "s3://lathe"+query)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	it := root.bucket.List(nil)
	n := 0
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if !strings.HasPrefix(obj.Key, "team/ml/records/") && !strings.HasPrefix(obj.Key, "team/ml/artifacts/") {
			t.Errorf("object %q lies outside the prefix team/ml/", obj.Key)
		}
	}
	if n != 2 {
		t.Errorf("%d objects in the bucket, want 2 (one record, one artifact)", n)
	}
	if got, err := root.Lookup(ctx, rec.Key); err != nil || got != nil {
		t.Errorf("the bucket root sees the record: %v, %v", got, err)
	}
	if got, err := team.Pull(ctx, openStore(t), rec.Key); err != nil || got == nil {
		t.Errorf("pull through the prefix = %v, %v", got, err)
	}
}

// TestOpenErrorHidesQuery checks that a driver's error, which quotes the
// URL it was given, does not show the query.
func TestOpenErrorHidesQuery(t *testing.T) {
	_, err := Open(context.Background(), "s3://lathe/team?region=eu-hidden-1&bogus=1")
	if err == nil {
		t.Fatal("Open accepted an unknown parameter")
	}
	if msg := err.Error(); strings.Contains(msg, "eu-hidden-1") || !strings.Contains(msg, "s3://lathe/team") || !strings.Contains(msg, "bogus") {
		t.Errorf("error must name the URL and the bad parameter without the query: %s", msg)
	}
}

// TestFilePrefixParameter checks the prefix parameter on file:// URLs.
func TestFilePrefixParameter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, err := Open(ctx, "file://"+dir+"?prefix=one")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a := openStore(t)
	rec := commitLocal(t, a, "file-prefix", files)
	if _, err := r.Push(ctx, a, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "one", "records", rec.Key[:2], rec.Key+".json")); err != nil {
		t.Errorf("record not under the prefix: %v", err)
	}
}
