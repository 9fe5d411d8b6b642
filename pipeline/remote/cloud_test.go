package remote

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

// isolateCloudEnv empties every variable through which the cloud SDKs
// find credentials and points HOME at an empty directory, so that a test
// sees no credentials of the machine it runs on.
func isolateCloudEnv(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("CLOUDSDK_CONFIG", home)
	t.Setenv("AZURE_CONFIG_DIR", home)
	for _, name := range []string{
		"GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST", "STORAGE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST_GRPC",
		"AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
		"AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGEBLOB_CONNECTIONSTRING",
		"AZURE_STORAGE_DOMAIN", "AZURE_STORAGE_PROTOCOL", "AZURE_STORAGE_IS_LOCAL_EMULATOR", "AZURE_STORAGE_IS_CDN",
		"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
		"AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE",
		"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET",
	} {
		t.Setenv(name, "") // restored when the test ends
		os.Unsetenv(name)  // unset, not empty: some SDKs tell the two apart
	}
	// Only the environment credential, which finds nothing at once: the
	// rest of the chain would ask the machine's metadata service or az.
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
}

// objectServer is a read-only fake of a cloud object store's HTTP API:
// GET (and HEAD) of a path ending in an object's escaped or plain name
// returns it, anything else is 404.
type objectServer struct {
	*httptest.Server
	mu       sync.Mutex
	objects  map[string][]byte // object name -> content
	requests []*http.Request
	deny     bool // answer 403 and echo the request's query, as some servers do
}

func newObjectServer(t *testing.T, headers func(w http.ResponseWriter, size int)) *objectServer {
	t.Helper()
	s := &objectServer{objects: map[string][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Clone(r.Context()))
		deny := s.deny
		var body []byte
		found := false
		for name, b := range s.objects {
			if strings.HasSuffix(r.URL.Path, "/"+name) {
				body, found = b, true
			}
		}
		s.mu.Unlock()
		switch {
		case deny:
			w.Header().Set("x-ms-error-code", "AuthenticationFailed")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte("<Error><Code>AuthenticationFailed</Code><Message>Signature did not match: " + r.URL.RawQuery + "</Message></Error>"))
		case !found || r.Method != http.MethodGet && r.Method != http.MethodHead:
			w.Header().Set("x-ms-error-code", "BlobNotFound")
			w.WriteHeader(http.StatusNotFound)
		default:
			headers(w, len(body))
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodGet {
				w.Write(body)
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *objectServer) put(name string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[name] = b
}

// seen returns the requests served so far.
func (s *objectServer) seen() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.requests...)
}

func (s *objectServer) host() string { return strings.TrimPrefix(s.URL, "http://") }

// blackhole starts a server that never answers until the test ends.
func blackhole(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first
	return srv
}
