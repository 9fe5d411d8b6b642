stage "model-source" "base" {
  repo = "x"
}

stage "train" "t" {
  model  = model-source.base.model
  method = "lroa"
  lora {
    alpha = 16
  }
}
