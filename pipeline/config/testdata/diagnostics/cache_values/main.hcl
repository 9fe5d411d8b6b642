variable "remote_cache" {
  type    = string
  default = ""
}

cache {
  remote    = var.remote_cach
  read_only = "when on CI"
}

stage "model-source" "base" {
  repo = "org/base"
}
