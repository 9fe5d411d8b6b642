stage "exce" "prep" {
  command = ["true"]
}

stage "tokenize" "data" {
  path = "x"
}
