package config

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

const cacheStages = `
stage "model-source" "base" {
  repo = "org/base"
}
stage "train" "sft" {
  model = model-source.base.model
}
`

func TestCacheBlockSettings(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		in    Inputs
		want  *CacheSettings // nil: no block
	}{
		{"no block", map[string]string{"main.hcl": cacheStages}, Inputs{}, nil},
		{"literal", map[string]string{"main.hcl": cacheStages + `
cache {
  remote    = "s3://team/lathe?region=eu-west-1"
  read_only = true
}`}, Inputs{}, &CacheSettings{Remote: "s3://team/lathe?region=eu-west-1", ReadOnly: true}},
		{"variables and locals", map[string]string{"main.hcl": cacheStages + `
variable "bucket" { default = "team" }
variable "ci" {
  type    = bool
  default = false
}
locals { prefix = "gs://${var.bucket}" }
cache {
  remote    = "${local.prefix}/lathe"
  read_only = !var.ci
}`}, Inputs{Vars: []string{"bucket=ml-cache"}}, &CacheSettings{Remote: "gs://ml-cache/lathe", ReadOnly: true}},
		{"variable from the environment", map[string]string{"main.hcl": cacheStages + `
variable "ci" {
  type    = bool
  default = false
}
cache {
  remote    = "azblob://results"
  read_only = !var.ci
}`}, Inputs{Env: []string{"LATHE_VAR_ci=true"}}, &CacheSettings{Remote: "azblob://results", ReadOnly: false}},
		{"empty remote means none", map[string]string{"main.hcl": cacheStages + `
variable "remote_cache" { default = "" }
cache { remote = var.remote_cache }`}, Inputs{}, &CacheSettings{}},
		{"null remote means none", map[string]string{"main.hcl": cacheStages + `
cache {
  remote    = null
  read_only = null
}`}, Inputs{}, &CacheSettings{}},
		{"empty block", map[string]string{"main.hcl": cacheStages + "cache {}\n"}, Inputs{}, &CacheSettings{}},
		{"block in a second file", map[string]string{
			"main.hcl":  cacheStages,
			"cache.hcl": `cache { remote = "file:///srv/lathe-cache" }`,
		}, Inputs{}, &CacheSettings{Remote: "file:///srv/lathe-cache"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustResolve(t, writeFiles(t, tt.files), tt.in)
			got := r.Cache
			if (got == nil) != (tt.want == nil) {
				t.Fatalf("Cache = %+v, want %+v", got, tt.want)
			}
			if got == nil {
				return
			}
			if got.Remote != tt.want.Remote || got.ReadOnly != tt.want.ReadOnly {
				t.Errorf("Cache = {Remote: %q, ReadOnly: %v}, want {Remote: %q, ReadOnly: %v}", got.Remote, got.ReadOnly, tt.want.Remote, tt.want.ReadOnly)
			}
			if got.DeclRange.Filename == "" || got.DeclRange.Start.Line == 0 {
				t.Errorf("DeclRange %v not set", got.DeclRange)
			}
		})
	}
}

// TestCacheBlockLeavesStagesAlone checks that a cache block changes nothing
// a cache key is made of: every instance decodes to the same arguments,
// outputs and dependencies with or without it.
func TestCacheBlockLeavesStagesAlone(t *testing.T) {
	plain := mustResolve(t, writeFiles(t, map[string]string{"main.hcl": cacheStages}), Inputs{})
	with := mustResolve(t, writeFiles(t, map[string]string{"main.hcl": cacheStages + `
cache {
  remote    = "s3://team/lathe"
  read_only = true
}`}), Inputs{})
	if len(plain.Instances) != len(with.Instances) {
		t.Fatalf("%d instances with the block, %d without", len(with.Instances), len(plain.Instances))
	}
	for i, a := range plain.Instances {
		b := with.Instances[i]
		if a.Addr != b.Addr || !a.StaticArgs.RawEquals(b.StaticArgs) || len(a.Deps) != len(b.Deps) || len(a.Outputs) != len(b.Outputs) {
			t.Errorf("instance %s differs with a cache block: args %#v vs %#v", a.Addr, a.StaticArgs, b.StaticArgs)
		}
	}
}

func TestCheckRemoteURL(t *testing.T) {
	tests := []struct {
		url     string
		summary string // "" when accepted
		detail  string // a substring of the detail
	}{
		{"", "", ""},
		{"s3://bucket", "", ""},
		{"s3://bucket/team/lathe?region=us-east-1", "", ""},
		{"s3://bucket?endpoint=http://127.0.0.1:9000&use_path_style=true", "", ""},
		{"S3://bucket", "", ""},
		{"gs://bucket/prefix", "", ""},
		{"azblob://container?storage_account=acct", "", ""},
		{"file:///srv/cache", "", ""},
		{"file://localhost/srv/cache", "", ""},
		{"s4://bucket", "Unsupported remote cache scheme", `Did you mean "s3://"?`},
		{"gcs://bucket", "Unsupported remote cache scheme", `Did you mean "gs://"?`},
		{"azure://container", "Unsupported remote cache scheme", `Did you mean "azblob://"?`},
		{"fil:///srv/cache", "Unsupported remote cache scheme", `Did you mean "file://"?`},
		{"https://minio.local/bucket", "Unsupported remote cache scheme", "s3://bucket?endpoint="},
		{"ftp://host/dir", "Unsupported remote cache scheme", "not ftp://"},
		{"bucket/prefix", "Invalid remote cache URL", "has no scheme"},
		{"s3://bucket name", "Invalid remote cache URL", "not a valid URL"},
		{"s3:///prefix", "Invalid remote cache URL", "names no bucket"},
		{"azblob://", "Invalid remote cache URL", "names no container"},
		{"s3://key:secret@bucket", "Credentials in remote cache URL", "never belong"},
		{"file://relative/dir", "Invalid remote cache URL", "absolute directory"},
		{"file:relative", "Invalid remote cache URL", "absolute directory"},
		{"s3://bucket/a?prefix=b/", "Invalid remote cache URL", "prefix twice"},
		{"s3://bucket?key=one", "Invalid remote cache URL", "one object"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			d := checkRemoteURL(tt.url, hcl.Range{Filename: "main.hcl"})
			if tt.summary == "" {
				if d != nil {
					t.Fatalf("rejected: %s: %s", d.Summary, d.Detail)
				}
				return
			}
			if d == nil {
				t.Fatalf("accepted, want %q", tt.summary)
			}
			if d.Summary != tt.summary || !strings.Contains(d.Detail, tt.detail) {
				t.Errorf("got %q: %q\nwant %q containing %q", d.Summary, d.Detail, tt.summary, tt.detail)
			}
			if d.Subject == nil || d.Subject.Filename != "main.hcl" {
				t.Errorf("no subject range: %v", d.Subject)
			}
			if strings.Contains(d.Detail, "secret") {
				t.Errorf("the detail repeats the password: %q", d.Detail)
			}
		})
	}
}
