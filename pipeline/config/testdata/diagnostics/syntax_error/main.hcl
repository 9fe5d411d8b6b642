stage "exec" "prep" {
  command = ["sh", "-c", "true"
  outputs = ["result"]
}
