package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// openS3 starts an in-process S3-compatible server on 127.0.0.1 and opens
// a bucket on it through s3blob, over real HTTP. The returned backend lets
// a test tamper with stored objects.
func openS3(t *testing.T) (*Remote, *s3mem.Backend) {
	t.Helper()
	backend := s3mem.New()
	faker := gofakes3.New(backend)
	srv := httptest.NewServer(faker.Server())
	t.Cleanup(srv.Close)
	if err := backend.CreateBucket("lathe"); err != nil {
		t.Fatal(err)
	}
	// Credentials come from the usual AWS environment, never from the URL.
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	r, err := Open(context.Background(), "s3://lathe?region=us-east-1&use_path_style=true&endpoint="+srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if got := r.String(); got != "s3://lathe" {
		t.Errorf("String() = %q, want the URL without its query", got)
	}
	return r, backend
}

func TestS3RoundTripAndCorruption(t *testing.T) {
	ctx := context.Background()
	r, backend := openS3(t)
	a, b, c := openStore(t), openStore(t), openStore(t)
	rec := commitLocal(t, a, "s3", files)
	if wrote, err := r.Push(ctx, a, rec); err != nil || !wrote {
		t.Fatalf("push = %v, %v", wrote, err)
	}
	if wrote, err := r.Push(ctx, a, rec); err != nil || wrote {
		t.Fatalf("second push = %v, %v; want false", wrote, err)
	}
	if got, err := r.Pull(ctx, b, rec.Key); err != nil || got == nil {
		t.Fatalf("pull = %v, %v", got, err)
	}

	// Flip one byte of the artifact object in the bucket.
	obj, _ := artifactKey(rec.Artifacts["out"].Digest)
	o, err := backend.GetObject("lathe", obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(o.Contents)
	o.Contents.Close()
	if err != nil || int64(len(data)) != o.Size {
		t.Fatalf("read object: %d of %d bytes, %v", len(data), o.Size, err)
	}
	for i := 512; i < len(data); i++ {
		if data[i] >= 'a' && data[i] <= 'z' {
			data[i] ^= 1
			break
		}
	}
	if _, err := backend.PutObject("lathe", obj, map[string]string{}, bytesReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	got, err := r.Pull(ctx, c, rec.Key)
	if !errors.Is(err, ErrCorrupt) || got != nil {
		t.Fatalf("pull of flipped object = %v, %v; want ErrCorrupt", got, err)
	}
	if l, _ := c.Lookup(rec.Key); l != nil {
		t.Fatal("corrupt entry committed locally")
	}
}

func TestS3ConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	r, _ := openS3(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	wrote := make([]bool, n)
	var key string
	for i := range n {
		s := openStore(t)
		rec := commitLocal(t, s, "same", files)
		key = rec.Key
		wg.Add(1)
		go func() {
			defer wg.Done()
			wrote[i], errs[i] = r.Push(ctx, s, rec)
		}()
	}
	wg.Wait()
	winners := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
		if wrote[i] {
			winners++
		}
	}
	if winners != 1 {
		t.Fatalf("%d writers wrote the record; want exactly 1 (If-None-Match)", winners)
	}
	if got, err := r.Pull(ctx, openStore(t), key); err != nil || got == nil {
		t.Fatalf("pull after the race = %v, %v", got, err)
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// Push relies on the driver's if-not-exist write for a record that appears
// between its existence check and its write; both backends must refuse it.
func TestRecordWriteIsConditional(t *testing.T) {
	ctx := context.Background()
	fileRemote, _ := openPair(t)
	s3Remote, _ := openS3(t)
	for name, r := range map[string]*Remote{"file": fileRemote, "s3": s3Remote} {
		t.Run(name, func(t *testing.T) {
			k := recordKey(strings.Repeat("ab", 32))
			opts := &blob.WriterOptions{IfNotExist: true}
			if err := r.bucket.WriteAll(ctx, k, []byte("first"), opts); err != nil {
				t.Fatal(err)
			}
			err := r.bucket.WriteAll(ctx, k, []byte("second"), opts)
			if gcerrors.Code(err) != gcerrors.FailedPrecondition {
				t.Fatalf("second conditional write: %v (code %v), want FailedPrecondition", err, gcerrors.Code(err))
			}
			if got, _ := r.bucket.ReadAll(ctx, k); string(got) != "first" {
				t.Fatalf("record = %q, want the first write kept", got)
			}
		})
	}
}
