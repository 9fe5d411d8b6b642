stage "train" "t" {
  model         = "Qwen/Qwen2.5-0.5B"
  learning_rate = "fast"
}
