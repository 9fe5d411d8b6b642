cache {
  remote    = "s3://team-bucket/lathe"
  read_only = true
}

stage "model-source" "base" {
  repo = "org/base"
}

cache "shared" {
  remot = "gs://other"
}

cache {
  remote   = "gs://other"
  readonly = true
}
