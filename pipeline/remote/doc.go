// Package remote puts a shared object store behind lathe's local
// content-addressed store, so that CI runners and developer machines share
// stage results. Stores are opened through gocloud.dev/blob by URL:
// s3://bucket/prefix, gs://bucket/prefix, azblob://container/prefix and
// file:///dir. A path after the bucket (or ?prefix=) puts every object
// under that prefix, so one bucket can hold several caches.
//
// # Credentials
//
// Credentials come only from each cloud's usual environment, never from
// the URL (a user:password@ part is refused): the AWS SDK's chain for s3://
// (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws, instance roles);
// Application Default Credentials for gs:// (GOOGLE_APPLICATION_CREDENTIALS,
// gcloud's file, the metadata server); for azblob://, AZURE_STORAGE_ACCOUNT
// with AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or
// AZURE_STORAGE_CONNECTION_STRING, else DefaultAzureCredential. Open looks
// for gs:// and azblob:// credentials at once, within a short timeout, and
// fails with a message saying where it looked. Every error this package
// returns names URLs without their query and has the values of the clouds'
// secret variables, and signature parameters, replaced by [redacted].
//
// The gs:// and azblob:// drivers add about 43 MB to the binary; building
// with -tags lathe_nogcs or lathe_noazure leaves them out, and Open then
// says so for their URLs.
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
// It holds no credentials, does not delete or garbage-collect remote
// objects, and does not decide when to pull or push (the pipeline executor
// does) nor which URL to use (the command line does: its flag, then
// LATHE_REMOTE_CACHE, then the pipeline's cache block).
package remote
