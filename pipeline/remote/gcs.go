//go:build !lathe_nogcs

package remote

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"

	"gocloud.dev/blob"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/gcp"
	"golang.org/x/oauth2/google"
)

func init() { drivers["gs"] = openGCS }

// gcsHelp says where gs:// finds its credentials.
const gcsHelp = "gs:// uses Google Cloud Application Default Credentials: the key file named by GOOGLE_APPLICATION_CREDENTIALS, " +
	"else the file `gcloud auth application-default login` writes, else the service account of the Google Cloud machine lathe runs on " +
	"(STORAGE_EMULATOR_HOST selects an emulator; ?anonymous=true reads a public bucket)"

// openGCS opens a gs:// bucket. Unlike gocloud's default opener it finds
// the credentials within credentialTimeout, fails with a clear message when
// there are none, and prints nothing.
func openGCS(ctx context.Context, u *url.URL) (*blob.Bucket, error) {
	q := u.Query()
	anonymous := q.Get("access_id") == "-"
	if v := q.Get("anonymous"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("gs:// parameter anonymous=%q is not a boolean", v)
		}
		anonymous = anonymous || b
	}
	op := &gcsblob.URLOpener{}
	if anonymous || os.Getenv("STORAGE_EMULATOR_HOST") != "" {
		// An emulator takes no credentials; the client is replaced anyway.
		op.Client = gcp.NewAnonymousHTTPClient(gcp.DefaultTransport())
		return op.OpenBucketURL(ctx, u)
	}
	// The credentials keep the context they are found with for refreshing
	// tokens later, so it must outlive the search.
	keep := context.WithoutCancel(ctx)
	creds, err := withinTimeout(ctx, "Google Cloud credentials", func(context.Context) (*google.Credentials, error) {
		return gcp.DefaultCredentials(keep)
	})
	if err != nil {
		return nil, fmt.Errorf("no Google Cloud credentials: %v; %s", err, gcsHelp)
	}
	client, err := gcp.NewHTTPClient(gcp.DefaultTransport(), creds.TokenSource)
	if err != nil {
		return nil, fmt.Errorf("using Google Cloud credentials: %v; %s", err, gcsHelp)
	}
	op.Client, op.TokenSource = client, gcp.CredentialsTokenSource(creds)
	return op.OpenBucketURL(ctx, u)
}
