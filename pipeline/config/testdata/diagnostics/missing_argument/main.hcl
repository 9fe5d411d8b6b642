stage "exec" "prep" {
  outputs = ["result"]
}
