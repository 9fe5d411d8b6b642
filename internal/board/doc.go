// Package board is lathe's web UI, served by `lathe ui`: a face over the
// pipeline packages, like the CLI.
//
// It finds the pipelines of a directory (pipeline.hcl in it and in its
// immediate subdirectories), draws each one's DAG with the live state of
// its stages, plans edited variables (what would run and why, and the exact
// `lathe run -var ...` command), starts runs in the server and cancels them,
// follows a run's record (events.jsonl) over server-sent events for live
// stage states, logs and metric charts, lists past runs, overlays one metric
// across runs, shows a stage's cache key, its artifacts (with download) and,
// for tokenize stages, the first samples of the tokenized dataset with the
// trained tokens marked.
//
// The page is one HTML file, one stylesheet and two scripts, embedded with
// embed and written without libraries or a build step: the DAG and the
// charts are SVG drawn by board.js.
//
// Safety: every request that changes state (plan, start, cancel) must come
// from the board's own page (http.CrossOriginProtection) and carry the
// board's token, which the served page embeds. On loopback, reads need no
// token but the Host header must name the loopback interface (against DNS
// rebinding); beyond loopback every request needs the token, first from the
// printed URL and then from a cookie. Files are read only inside a
// pipeline's directory or the store: relative paths only, no "..", and a
// path whose symbolic links lead elsewhere is refused.
//
// It does not run stages itself (pipeline.Workspace.Run does), keep any
// state of its own beyond the runs it started (the run records are the
// truth), or edit pipeline files.
package board
