variable "proto" { default = "s3" }

cache {
  remote = "${var.proto}://team-bucket/lathe"
}

stage "model-source" "base" {
  repo = "org/base"
}
