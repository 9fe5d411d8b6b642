stage "exec" "prep" {
  comand  = ["true"]
  outputs = ["result"]
}
