// Package cache is lathe's content-addressed result store: the place where
// the outputs of pipeline stages are kept, keyed by the text that describes
// the work, so that identical work is done once.
//
// It knows nothing about HCL, cty or stage kinds. Keys arrive as labelled
// text lines built by the caller (see NewKey); values arrive as JSON; and
// artifacts are plain directory trees.
//
// # Layout
//
// Everything lives below the root given to Open (normally .lathe/):
//
//	records/<kk>/<key>.json    one record per cache key (kk = first two hex digits);
//	                           its mtime is the entry's last-used time
//	artifacts/<hex>/           one read-only directory tree per distinct tree digest
//	manifests/<hex>            the digest lines of that tree (see below), for Verify
//	staging/<id>/, <id>.lock   directories stages write into; the flock on the
//	                           .lock file marks them live
//	checkpoints/<key>/         resumable state of an unfinished stage, tied to its key
//	locks/<key>.lock           per-key flock files; locks/store.lock guards gc
//	statcache/<hh>/<hash>      HashPath's stat cache, one small JSON file per path
//	tmp/, trash/               temporary files and trees being deleted
//
// # Commit protocol and crash safety
//
// A stage writes its outputs into Staging.Dir/<name>. Commit hashes each
// output tree (fsyncing every file as it reads it), writes its manifest,
// makes the tree read-only and renames it to artifacts/<hex> (when that
// digest is already present the new copy is discarded: dedup). Only then is
// the record written: to a temporary file, fsynced, renamed over
// records/<kk>/<key>.json, and the directory fsynced. A crash at any point
// therefore leaves either no record (the work reruns; gc removes the orphan
// artifact and the stale staging directory) or a record whose artifacts are
// complete. Commit holds a shared flock on locks/store.lock from the artifact
// move to the record rename and GC holds it exclusively, so gc never removes
// an artifact that a commit in flight is about to reference.
//
// # Tree digest
//
// HashTree defines the digest of a directory tree. Every entry below the
// root (not the root itself) contributes one line
//
//	<type> <hex> <size> <path>\n
//
// where type is "d" (directory), "f" (regular file, not executable), "x"
// (regular file with any execute bit set) or "l" (symbolic link); hex is the
// lowercase hex SHA-256 of the file content, or of the link target text for
// a link, or "-" for a directory; size is the content length in bytes (the
// target length for a link, 0 for a directory); and path is the slash
// separated path relative to the root. Lines are sorted by path in byte
// order, and the digest is "sha256:" followed by the hex SHA-256 of the
// concatenated lines (so the empty tree hashes the empty string). Empty
// directories count; permissions other than the execute bit, owners and
// times do not. Symbolic links are kept as links; an absolute link or one
// whose target escapes the tree is an error, as are other special files and
// paths containing a newline.
//
// A single regular file (HashPath of a file) is hashed as a one-entry tree
// whose only line has path ".": "f <hex> <size> .\n" (or "x ..."), so the
// digest does not depend on the file's name.
//
// # What it does not do
//
// It does not decide what goes into a key, does not run stages, does not
// share a store across machines (pipeline/remote does that on top of it)
// and never repairs anything silently: Verify
// reports, and Remove deletes only what the caller asks it to.
package cache
