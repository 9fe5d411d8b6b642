package remote

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
)

// secretEnv names the environment variables of the cloud SDKs whose
// values are secrets; scrub removes them from messages.
var secretEnv = []string{
	"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
	"AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGEBLOB_CONNECTIONSTRING",
	"AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
	"GOOGLE_OAUTH_ACCESS_TOKEN",
}

// secretParam matches secret-bearing parameters as they appear in URLs,
// signed requests and connection strings.
var secretParam = regexp.MustCompile(`(?i)\b(sig|signature|x-amz-signature|x-amz-security-token|x-amz-credential|x-goog-signature|x-goog-credential|accountkey|sharedaccesssignature|access_token|client_secret)=[^&;\s"'<]+`)

// minSecret is the shortest environment value scrub hides: shorter ones
// would garble ordinary words, and real keys are far longer.
const minSecret = 8

// scrubText replaces every secret in msg with [redacted].
func scrubText(msg string) string {
	for _, name := range secretEnv {
		v := os.Getenv(name)
		if len(v) < minSecret {
			continue
		}
		msg = strings.ReplaceAll(msg, v, "[redacted]")
		// A SAS token or connection string also leaks by its parts.
		for _, part := range strings.FieldsFunc(v, func(r rune) bool { return r == '&' || r == ';' }) {
			if _, val, ok := strings.Cut(part, "="); ok && len(val) >= minSecret {
				msg = strings.ReplaceAll(msg, val, "[redacted]")
			}
		}
	}
	return secretParam.ReplaceAllStringFunc(msg, func(m string) string {
		name, _, _ := strings.Cut(m, "=")
		return name + "=[redacted]"
	})
}

// scrubbed is an error whose message has its secrets removed; it unwraps
// to the original, so errors.Is and gcerrors.Code still work.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// scrub returns err with its message scrubbed, or nil.
func scrub(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*scrubbed); ok {
		return err
	}
	return &scrubbed{msg: scrubText(err.Error()), err: err}
}

// credentialTimeout bounds the search for cloud credentials, which may
// probe a metadata server that does not answer.
var credentialTimeout = 15 * time.Second

// withinTimeout runs find for at most credentialTimeout, or until ctx
// ends; when time is up it stops waiting and leaves find to finish on its
// own (its network calls have their own, longer, timeouts).
func withinTimeout[T any](ctx context.Context, what string, find func(ctx context.Context) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ctx, cancel := context.WithTimeout(ctx, credentialTimeout)
	defer cancel()
	ch := make(chan result, 1)
	go func() {
		v, err := find(ctx)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		if ctx.Err() == context.DeadlineExceeded {
			return zero, fmt.Errorf("looking for %s gave no answer within %s", what, credentialTimeout)
		}
		return zero, ctx.Err()
	}
}
