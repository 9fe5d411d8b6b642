locals {
  ro = train.sweep.metrics["loss"] > 1
}

cache {
  remote    = "s3://bucket/${model-source.base.model}"
  read_only = local.ro
}

stage "model-source" "base" {
  repo = "org/base"
}

stage "train" "sweep" {
  model = model-source.base.model
}
