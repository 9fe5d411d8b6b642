# This file is maintained by lathe (`lathe lock`, `lathe run`).
# Commit it with the pipeline: it makes plans reproducible and offline.

pin "download.base" {
  kind = "download"
  inputs = {
    repo     = "model org/tiny"
    revision = "main"
  }
  values = {
    commit = "3f2a0c9e1b7d4a5f8e6c0b1a2d3e4f5a6b7c8d9e"
  }
}

pin "download.m[\"a\"]" {
  kind = "download"
  inputs = {
    repo     = "dataset org/data"
    revision = "v1"
  }
  values = {
    commit = "0000000000000000000000000000000000000001"
  }
}
