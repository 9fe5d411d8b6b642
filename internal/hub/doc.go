// Package hub is a client for the Hugging Face Hub's public HTTP API: it
// resolves a model or dataset repository's revision (branch, tag or commit) to
// a commit sha, lists the repository's files with their sizes and digests, and
// downloads them, verified, into a local directory.
//
// Behaviour follows the reference client (huggingface_hub):
//
//   - HF_ENDPOINT moves the Hub (default https://huggingface.co); HF_TOKEN is
//     sent as a Bearer token to that host only, never to the CDN a download
//     redirects to, and never appears in errors, logs or cache keys.
//   - HF_HUB_OFFLINE=1 forbids the network: revisions resolve through the
//     local HF cache's refs and files are served from its snapshots, or the
//     call fails saying so.
//   - An existing HF cache (HF_HUB_CACHE, else HF_HOME/hub, else
//     ~/.cache/huggingface/hub; layout <type>s--org--name/{refs,snapshots,blobs})
//     is reused read-only when it holds the files: this package never writes it.
//   - LFS files are verified by their sha256, other files by size and by their
//     git blob sha1 when the listing gives it; a file lands in the destination
//     only after verification (download to a partial file, verify, rename).
//   - An interrupted file resumes with a Range request (a server that ignores
//     Range and answers 200 restarts it); 429 and 5xx answers and dropped
//     connections are retried with backoff, honouring Retry-After, within a
//     bounded total wait; files download in parallel (bounded).
//   - include/exclude patterns are fnmatch-style, as huggingface_hub's
//     allow_patterns/ignore_patterns: '*' also matches '/'.
//
// This package does not upload, does not write or evict the HF cache, does not
// handle Xet-only storage (it downloads through the resolve endpoint, which the
// Hub serves for every file), and knows nothing about pipelines or stages.
package hub
