package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// CacheBlock is the top-level cache block: where results are shared, not
// what they are. Nothing in it enters a cache key.
type CacheBlock struct {
	// Remote and ReadOnly are the expressions of the remote and read_only
	// arguments, or nil when absent.
	Remote, ReadOnly hcl.Expression
	DeclRange        hcl.Range
}

// CacheSettings is the evaluated cache block.
type CacheSettings struct {
	// Remote is the URL of the shared remote cache; "" when the block sets
	// none (remote absent, null or "").
	Remote string
	// ReadOnly asks to pull from the remote cache but never push to it.
	ReadOnly bool
	// DeclRange is where the block is written, for messages.
	DeclRange hcl.Range
}

var cacheTypeName = map[cty.Type]string{cty.String: "a URL string", cty.Bool: "true or false"}

var cacheSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "remote"}, {Name: "read_only"}},
}

// RemoteCacheSchemes are the URL schemes a remote cache may use.
var RemoteCacheSchemes = []string{"s3", "gs", "azblob", "file"}

// schemeAliases maps schemes people write by habit to the one lathe uses.
var schemeAliases = map[string]string{
	"gcs":   "gs",
	"az":    "azblob",
	"azure": "azblob",
	"wasb":  "azblob",
	"wasbs": "azblob",
	"abfs":  "azblob",
	"abfss": "azblob",
	"s3a":   "s3",
	"s3n":   "s3",
}

func decodeCache(block *hcl.Block) (*CacheBlock, hcl.Diagnostics) {
	c := &CacheBlock{DeclRange: block.DefRange}
	content, diags := block.Body.Content(cacheSchema)
	if a, ok := content.Attributes["remote"]; ok {
		c.Remote = a.Expr
	}
	if a, ok := content.Attributes["read_only"]; ok {
		c.ReadOnly = a.Expr
	}
	return c, diags
}

// checkCache evaluates and validates the cache block, setting
// r.res.Cache.
func (r *resolver) checkCache() {
	c := r.p.Cache
	if c == nil {
		return
	}
	set := &CacheSettings{DeclRange: c.DeclRange}
	if c.Remote != nil {
		v, ok := r.cacheValue(c.Remote, "remote", cty.String)
		if ok && !v.IsNull() {
			set.Remote = v.AsString()
			if d := checkRemoteURL(set.Remote, c.Remote.Range()); d != nil {
				r.diags = append(r.diags, d)
			}
		}
	}
	if c.ReadOnly != nil {
		v, ok := r.cacheValue(c.ReadOnly, "read_only", cty.Bool)
		if ok && !v.IsNull() {
			set.ReadOnly = v.True()
		}
	}
	r.res.Cache = set
}

// cacheValue evaluates one argument of the cache block, which may refer
// to variables and locals known before any stage runs, and converts it to
// ty. It reports false after an error.
func (r *resolver) cacheValue(expr hcl.Expression, name string, ty cty.Type) (cty.Value, bool) {
	var refs []ref
	bad := false
	for _, tr := range expr.Variables() {
		switch tr.RootName() {
		case "var", "local":
			refs = append(refs, r.checkRef(tr, "the cache block", false))
		default:
			r.refError(tr, "Invalid reference in cache block",
				fmt.Sprintf("The cache block is read before any stage runs, so its %s argument can refer only to variables (var.<name>) and local values (local.<name>), not to %q.", name, tr.RootName()))
			bad = true
		}
	}
	if r.checkRefs(refs) {
		bad = true
	}
	val, diags := expr.Value(r.evalCtx(nil))
	diags = r.filter(diags)
	r.diags = append(r.diags, diags...)
	if bad || diags.HasErrors() {
		return cty.NilVal, false
	}
	if !val.IsWhollyKnown() {
		r.diags = append(r.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cache setting not known before the run",
			Detail:   fmt.Sprintf("The %s argument of the cache block depends on a stage output (through a local value), but it is needed before any stage runs. Use variables and local values that do not refer to stages.", name),
			Subject:  expr.Range().Ptr(),
		})
		return cty.NilVal, false
	}
	conv, err := convert.Convert(val, ty)
	if err != nil {
		r.diags = append(r.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid cache setting",
			Detail:   fmt.Sprintf("The %s argument of the cache block must be %s, not %s.", name, cacheTypeName[ty], val.Type().FriendlyName()),
			Subject:  expr.Range().Ptr(),
		})
		return cty.NilVal, false
	}
	return conv, true
}

// checkRemoteURL validates a remote cache URL statically ("" means no
// remote cache). It returns nil when the URL is acceptable.
func checkRemoteURL(raw string, rng hcl.Range) *hcl.Diagnostic {
	if raw == "" {
		return nil
	}
	const forms = "A remote cache URL looks like s3://bucket/prefix, gs://bucket/prefix, azblob://container/prefix or file:///absolute/directory."
	bad := func(summary, detail string) *hcl.Diagnostic {
		return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()}
	}
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return bad("Invalid remote cache URL", fmt.Sprintf("%q is not a valid URL: %v. %s", raw, err, forms))
	}
	if u.Scheme == "" {
		return bad("Invalid remote cache URL", fmt.Sprintf("%q has no scheme. %s", raw, forms))
	}
	scheme := strings.ToLower(u.Scheme)
	supported := false
	for _, s := range RemoteCacheSchemes {
		supported = supported || s == scheme
	}
	if !supported {
		detail := fmt.Sprintf("lathe's remote cache supports s3://, gs://, azblob:// and file:// URLs, not %s://.", u.Scheme)
		switch {
		case schemeAliases[scheme] != "":
			detail += fmt.Sprintf(" Did you mean %q?", schemeAliases[scheme]+"://")
		case scheme == "http" || scheme == "https":
			detail += " For an S3-compatible server (MinIO, SeaweedFS, R2), write s3://bucket?endpoint=https://host&use_path_style=true."
		default:
			if s := suggest(scheme, RemoteCacheSchemes); s != "" {
				detail += fmt.Sprintf(" Did you mean %q?", s+"://")
			}
		}
		return bad("Unsupported remote cache scheme", detail)
	}
	if u.User != nil {
		return bad("Credentials in remote cache URL", "The remote cache URL carries a user name or password (before @). Credentials never belong in a pipeline file: each cloud's usual environment supplies them (the AWS_* variables or ~/.aws for s3://, GOOGLE_APPLICATION_CREDENTIALS or gcloud for gs://, the AZURE_* variables or az login for azblob://).")
	}
	if u.Query().Has("key") {
		return bad("Invalid remote cache URL", "The key query parameter would confine the remote cache to one object; use a bucket, with a prefix if it is shared.")
	}
	if scheme == "file" {
		if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !strings.HasPrefix(u.Path, "/") {
			return bad("Invalid remote cache URL", fmt.Sprintf("A file:// remote cache needs an absolute directory, as in file:///srv/lathe-cache (three slashes); %q is not one.", raw))
		}
		return nil
	}
	if strings.Trim(u.Path, "/") != "" && u.Query().Has("prefix") {
		return bad("Invalid remote cache URL", fmt.Sprintf("%q gives a prefix twice, as a path and as ?prefix=; keep one.", raw))
	}
	if u.Host == "" {
		what := "bucket"
		if scheme == "azblob" {
			what = "container"
		}
		return bad("Invalid remote cache URL", fmt.Sprintf("%q names no %s: a %s:// URL puts the %s right after the scheme, as in %s://my-%s/prefix.", raw, what, scheme, what, scheme, what))
	}
	return nil
}
