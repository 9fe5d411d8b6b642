stage "train" "t" {
  model = model-source.base.model
}
