cache {
  remote = "s3://AKIAEXAMPLE:secret@team-bucket/lathe"
}

stage "model-source" "base" {
  repo = "org/base"
}
