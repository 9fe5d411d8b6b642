package hub

import (
	"context"
	"testing"

	"github.com/lathe-ml/lathe/internal/hub/hubtest"
)

// BenchmarkDownload measures a verified download of one 32 MiB LFS file and
// four small files from the local fake Hub (through its CDN redirect): the
// client's own overhead (HTTP, hashing, rename), not any network's speed.
func BenchmarkDownload(b *testing.B) {
	h := hubtest.New(b)
	repo := modelRepo()
	repo.Files["model.safetensors"] = hubtest.File{Data: randBytes(32<<20, 3), LFS: true}
	h.Add(repo)
	var total int64
	for _, f := range repo.Files {
		total += int64(len(f.Data))
	}
	c := &Client{Endpoint: h.API.URL}
	b.SetBytes(total)
	for b.Loop() {
		if _, err := c.Download(context.Background(), Repo{Model, "org/tiny"}, "main", b.TempDir(), DownloadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
