// Package config reads lathe pipeline files and validates them statically.
//
// A pipeline is written in HCL: variable, locals, stage "<kind>" "<name>" and
// output blocks (see DESIGN.md §2), and at most one cache block saying
// where results are shared (cache { remote = "s3://bucket/prefix"
// read_only = false }). Load parses one file or a directory of *.hcl files
// into a Pipeline. Resolve then assigns variable values (default,
// LATHE_VAR_<name> environment variables, -var-file files, -var flags),
// evaluates locals, expands for_each, and decodes every stage instance
// against its kind's schema with every upstream stage output unknown. That
// one pass reports, as hcl.Diagnostics with source ranges and did-you-mean
// suggestions, everything that can be known before running anything: syntax
// and structure errors, unknown kinds, arguments and outputs, type errors,
// undeclared names, bad for_each values, failed variable validation rules and
// dependency cycles. Its result, Resolved, lists the stage instances in
// topological order with their direct dependencies; Args and OutputValues
// evaluate arguments and output blocks once real upstream outputs exist.
// Resolved.Cache is the evaluated cache block: its URL scheme is checked
// statically, and it never enters a stage's arguments or cache key.
// Resolved.Executor is the evaluated executor "slurm" block (partition,
// account, qos, time, sbatch_args, store, lathe): where stages run, checked
// statically and kept out of every cache key like the cache block.
//
// This package does not plan, cache, schedule or run stages (package pipeline
// does), and it knows no concrete stage kind: kinds come from a
// stage.Registry. It does not open the remote cache (package
// pipeline/remote does) or talk to Slurm (pipeline/slurm does), does not write pipeline files (no formatter) and
// does not read the lock file.
package config
