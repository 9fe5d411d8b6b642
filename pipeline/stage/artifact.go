package stage

import (
	"fmt"
	"reflect"
	"sync"

	"github.com/zclconf/go-cty/cty"
)

// Artifact is a reference to a directory tree in the content-addressed store.
// In HCL an artifact is an opaque value of an artifact type such as
// ArtifactType("model"): it can be passed from one stage's output to another
// stage's argument, but not built from a string.
type Artifact struct {
	// Kind is the artifact kind: "model", "tokenizer", "dataset", ...
	Kind string
	// Digest is the tree digest ("sha256:<hex>"); it is what cache keys see.
	Digest string
	// Path is the artifact's directory on this machine. It is filled in by
	// the executor when the artifact is handed to a Run, and never enters a
	// cache key.
	Path string
}

// The artifact kinds used across stages. A stage may declare others.
const (
	ModelArtifact     = "model"
	AdapterArtifact   = "adapter"
	TokenizerArtifact = "tokenizer"
	DatasetArtifact   = "dataset"
	ReportArtifact    = "report"
	FilesArtifact     = "files"
)

var (
	artifactTypesMu sync.Mutex
	artifactTypes   = map[string]cty.Type{}
	artifactKinds   = map[string]string{} // capsule type friendly name -> kind
)

// ArtifactType returns the cty capsule type of artifacts of the given kind.
// The same kind always yields the same type, so artifact types compare equal
// across packages.
func ArtifactType(kind string) cty.Type {
	artifactTypesMu.Lock()
	defer artifactTypesMu.Unlock()
	if t, ok := artifactTypes[kind]; ok {
		return t
	}
	name := kind + " artifact"
	t := cty.CapsuleWithOps(name, reflect.TypeOf(Artifact{}), &cty.CapsuleOps{
		GoString: func(v any) string {
			a := v.(*Artifact)
			return fmt.Sprintf("stage.ArtifactVal(%q, %q)", a.Kind, a.Digest)
		},
		TypeGoString: func(reflect.Type) string { return fmt.Sprintf("stage.ArtifactType(%q)", kind) },
		RawEquals: func(a, b any) bool {
			return a.(*Artifact).Digest == b.(*Artifact).Digest
		},
		HashKey: func(v any) string { return v.(*Artifact).Digest },
	})
	artifactTypes[kind] = t
	artifactKinds[name] = kind
	return t
}

// ArtifactKindOf reports the artifact kind of t, if t is an artifact type.
func ArtifactKindOf(t cty.Type) (string, bool) {
	if !t.IsCapsuleType() || t.EncapsulatedType() != reflect.TypeOf(Artifact{}) {
		return "", false
	}
	artifactTypesMu.Lock()
	defer artifactTypesMu.Unlock()
	kind, ok := artifactKinds[t.FriendlyName()]
	return kind, ok && artifactTypes[kind].Equals(t)
}

// ArtifactVal returns a known artifact value.
func ArtifactVal(a Artifact) cty.Value {
	copied := a
	return cty.CapsuleVal(ArtifactType(a.Kind), &copied)
}

// ArtifactOf returns the artifact held by v, which must be a known, non-null
// artifact value.
func ArtifactOf(v cty.Value) (Artifact, bool) {
	if v.IsNull() || !v.IsKnown() {
		return Artifact{}, false
	}
	if _, ok := ArtifactKindOf(v.Type()); !ok {
		return Artifact{}, false
	}
	return *v.EncapsulatedValue().(*Artifact), true
}
