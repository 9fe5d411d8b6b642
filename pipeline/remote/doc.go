// Package remote puts a shared object store (anything gocloud.dev/blob
// opens: file://, s3://; other schemes when their driver is linked in)
// behind lathe's local content-addressed store, so that CI runners and
// developer machines share stage results.
//
// # Bucket layout
//
//	records/<kk>/<key>.json   the local record, byte for byte (kk = first two hex digits)
//	artifacts/<hex>.tar       one tar object per artifact tree (tree digest sha256:<hex>)
//
// A tree is packed as a single tar object: one object is written or not,
// so there is no half-uploaded tree, and no separate manifest is needed
// because the reader recomputes the digest from the unpacked files.
//
// # Guarantees
//
// Push writes every artifact object first and the record object last, with
// a write-once (if-not-exist) condition: an existing record is never
// overwritten, so concurrent writers of one key leave one consistent entry
// and a reader never sees a record whose data is missing. Pull never trusts
// the bucket: it unpacks each tree into a local staging directory,
// recomputes the tree digest (cache.HashTree) and compares it with the
// record; any mismatch is an error naming the object (ErrCorrupt) and
// nothing is committed locally. Only then is the result committed through
// cache.Store.Commit, the same protocol a local stage uses.
//
// # What it does not do
//
// It holds no credentials (each cloud driver reads its usual environment),
// does not delete or garbage-collect remote objects, and does not decide
// when to pull or push: the pipeline executor does.
package remote
