//go:build !lathe_noazure

package remote

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	testAccountKey = "c2VjcmV0LWtleS1mb3ItbGF0aGUtdGVzdHM=" // base64, as Azure keys are
	testSASSig     = "U0FTLXNpZ25hdHVyZS1zZWNyZXQ%3D"
)

// TestAzureWithoutCredentials checks that azblob:// without an account or
// credentials fails at Open with a message naming the scheme and where the
// account and credentials are looked for.
func TestAzureWithoutCredentials(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		url  string
		want string
	}{
		{"no account", nil, "azblob://results/lathe", "no Azure storage account"},
		{"no credentials", map[string]string{"AZURE_STORAGE_ACCOUNT": "teamacct"}, "azblob://results/lathe", "no Azure credentials"},
		{"account in the URL", nil, "azblob://results/lathe?storage_account=teamacct", "no Azure credentials"},
		{"malformed key", map[string]string{"AZURE_STORAGE_ACCOUNT": "teamacct", "AZURE_STORAGE_KEY": "not base64 at all!"}, "azblob://results", "AZURE_STORAGE_KEY is not a valid shared key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateCloudEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r, err := Open(context.Background(), tt.url)
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded without credentials")
			}
			msg := err.Error()
			for _, want := range []string{"azblob://results", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "az login", tt.want} {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q:\n%s", want, msg)
				}
			}
			if strings.Contains(msg, "storage_account=teamacct") || strings.Contains(msg, "not base64 at all") {
				t.Errorf("error shows the URL's query or the key: %s", msg)
			}
		})
	}
}

// TestAzureCredentialSearchTimesOut makes the managed identity endpoint a
// server that never answers: Open must give up after credentialTimeout.
func TestAzureCredentialSearchTimesOut(t *testing.T) {
	isolateCloudEnv(t)
	srv := blackhole(t)
	t.Setenv("AZURE_STORAGE_ACCOUNT", "teamacct")
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "ManagedIdentityCredential")
	t.Setenv("IDENTITY_ENDPOINT", srv.URL+"/token")
	t.Setenv("IDENTITY_HEADER", "header")
	defer func(d time.Duration) { credentialTimeout = d }(credentialTimeout)
	credentialTimeout = 200 * time.Millisecond
	r, err := Open(context.Background(), "azblob://results")
	if err == nil {
		r.Close()
		t.Fatal("Open succeeded against a silent identity endpoint")
	}
	for _, want := range []string{"azblob://results", "no Azure credentials", "AZURE_STORAGE_ACCOUNT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
}

func azureHeaders(w http.ResponseWriter, size int) {
	w.Header().Set("Content-Length", fmt.Sprint(size))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"0x1"`)
	w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
	w.Header().Set("x-ms-blob-type", "BlockBlob")
}

// TestAzureSharedKeyPull reads through azblob:// from a fake of the Blob
// API on 127.0.0.1, with a shared key from the environment: requests are
// signed, the key itself never travels.
func TestAzureSharedKeyPull(t *testing.T) {
	isolateCloudEnv(t)
	srv := newObjectServer(t, azureHeaders)
	t.Setenv("AZURE_STORAGE_ACCOUNT", "devacct")
	t.Setenv("AZURE_STORAGE_KEY", testAccountKey)
	checkReadThrough(t, srv, "azblob://cache/team?localemu=true&protocol=http&domain="+srv.host())
	for _, r := range srv.seen() {
		auth := r.Header.Get("Authorization")
		if !strings.HasPrefix(auth, "SharedKey devacct:") || strings.Contains(auth, testAccountKey) {
			t.Errorf("request %s has Authorization %q, want a SharedKey signature", r.URL.Path, auth)
		}
	}
}

// TestAzureErrorsHideTheSASToken has the server reject a SAS request and
// echo its query, signature included, as a misbehaving proxy might: the
// error lathe reports must not carry the signature.
func TestAzureErrorsHideTheSASToken(t *testing.T) {
	isolateCloudEnv(t)
	srv := newObjectServer(t, azureHeaders)
	srv.deny = true
	t.Setenv("AZURE_STORAGE_ACCOUNT", "devacct")
	t.Setenv("AZURE_STORAGE_SAS_TOKEN", "sv=2022-11-02&sp=rw&sig="+testSASSig)
	r, err := Open(context.Background(), "azblob://cache?localemu=true&protocol=http&domain="+srv.host())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.Lookup(context.Background(), strings.Repeat("cd", 32))
	if err == nil {
		t.Fatal("lookup succeeded against a server that refuses everything")
	}
	if strings.Contains(err.Error(), "U0FTLXNpZ25hdHVyZS1zZWNyZXQ") || !strings.Contains(err.Error(), "AuthenticationFailed") {
		t.Errorf("error must name the failure and hide the signature:\n%s", err)
	}
	if reqs := srv.seen(); len(reqs) == 0 || !strings.Contains(reqs[0].URL.RawQuery, "sig=") {
		t.Errorf("the SAS token did not reach the server: %v", reqs)
	}
}
