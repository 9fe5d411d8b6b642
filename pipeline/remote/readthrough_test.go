package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// checkReadThrough serves one committed result from srv under the prefix
// "team/" and checks Lookup and Pull through the remote at url, then that
// a corrupt artifact is refused.
func checkReadThrough(t *testing.T, srv *objectServer, url string) {
	t.Helper()
	ctx := context.Background()
	r, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a := openStore(t)
	rec := commitLocal(t, a, "read-through "+url, files)

	if got, err := r.Lookup(ctx, rec.Key); err != nil || got != nil {
		t.Fatalf("lookup of an absent record = %v, %v; want nil, nil", got, err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	srv.put("team/"+recordKey(rec.Key), data)
	var tree bytes.Buffer
	art := rec.Artifacts["out"]
	if err := packTree(&tree, a.ArtifactPath(art.Digest)); err != nil {
		t.Fatal(err)
	}
	obj, err := artifactKey(art.Digest)
	if err != nil {
		t.Fatal(err)
	}
	srv.put("team/"+obj, tree.Bytes())

	got, err := r.Lookup(ctx, rec.Key)
	if err != nil || got == nil || got.Key != rec.Key {
		t.Fatalf("lookup = %v, %v", got, err)
	}
	pulled, err := r.Pull(ctx, openStore(t), rec.Key)
	if err != nil || pulled == nil || pulled.Artifacts["out"].Digest != art.Digest {
		t.Fatalf("pull = %v, %v", pulled, err)
	}

	corrupt := bytes.Clone(tree.Bytes())
	i := bytes.Index(corrupt, []byte("alpha"))
	corrupt[i] = 'A'
	srv.put("team/"+obj, corrupt)
	if got, err := r.Pull(ctx, openStore(t), rec.Key); !errors.Is(err, ErrCorrupt) || got != nil {
		t.Fatalf("pull of a corrupt tree = %v, %v; want ErrCorrupt", got, err)
	}
	for _, req := range srv.seen() {
		if !strings.Contains(req.URL.Path, "/team/") {
			t.Errorf("request %s %s outside the prefix team/", req.Method, req.URL.Path)
		}
	}
}
