//go:build !lathe_nogcs

package remote

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGCSWithoutCredentials checks that gs:// without usable credentials
// fails at Open with a message naming the scheme and where credentials
// are looked for.
func TestGCSWithoutCredentials(t *testing.T) {
	dir := t.TempDir()
	badKey := filepath.Join(dir, "key.json")
	if err := os.WriteFile(badKey, []byte(`{"type": "service_account", "private_key": "-----BEGIN`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, credentials, want string
	}{
		{"missing key file", filepath.Join(dir, "absent.json"), "absent.json"},
		{"malformed key file", badKey, "no Google Cloud credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateCloudEnv(t)
			t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", tt.credentials)
			r, err := Open(context.Background(), "gs://team-cache/lathe?anonymous=false")
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded without credentials")
			}
			msg := err.Error()
			for _, want := range []string{"gs://team-cache/lathe", "GOOGLE_APPLICATION_CREDENTIALS", "gcloud auth application-default login", tt.want} {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q:\n%s", want, msg)
				}
			}
			if strings.Contains(msg, "anonymous=false") {
				t.Errorf("error shows the URL's query: %s", msg)
			}
		})
	}
}

// TestGCSCredentialSearchTimesOut points the metadata server at a server
// that never answers: Open must give up after credentialTimeout, not hang.
// It is the only test in this package that reaches the metadata probe,
// whose answer the Google library keeps for the whole process.
func TestGCSCredentialSearchTimesOut(t *testing.T) {
	isolateCloudEnv(t)
	srv := blackhole(t)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(srv.URL, "http://"))
	defer func(d time.Duration) { credentialTimeout = d }(credentialTimeout)
	credentialTimeout = 200 * time.Millisecond
	r, err := Open(context.Background(), "gs://team-cache")
	if err == nil {
		r.Close()
		t.Fatal("Open succeeded against a silent metadata server")
	}
	for _, want := range []string{"gs://team-cache", "gave no answer within 200ms", "GOOGLE_APPLICATION_CREDENTIALS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
}

// TestGCSEmulatorPull reads through gs:// from a fake of the GCS API
// (STORAGE_EMULATOR_HOST): the prefix applies and pulled trees are
// verified.
func TestGCSEmulatorPull(t *testing.T) {
	isolateCloudEnv(t)
	srv := newObjectServer(t, func(w http.ResponseWriter, size int) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Header().Set("X-Goog-Generation", "1")
		w.Header().Set("Content-Type", "application/octet-stream")
	})
	t.Setenv("STORAGE_EMULATOR_HOST", srv.host())
	checkReadThrough(t, srv, "gs://bucket/team")
}
