//go:build lathe_nogcs || lathe_noazure

package remote

import (
	"context"
	"strings"
	"testing"
)

// TestSchemeWithoutDriver checks the message of a binary built without a
// cloud driver (go test -tags lathe_nogcs,lathe_noazure).
func TestSchemeWithoutDriver(t *testing.T) {
	for _, scheme := range []string{"gs", "azblob"} {
		if _, linked := drivers[scheme]; linked {
			continue
		}
		r, err := Open(context.Background(), scheme+"://bucket")
		if err == nil {
			r.Close()
			t.Fatalf("%s:// opened without its driver", scheme)
		}
		if want := "built without the " + scheme + ":// driver"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
