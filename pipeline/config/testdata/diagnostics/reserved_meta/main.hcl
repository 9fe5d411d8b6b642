stage "exec" "prep" {
  command    = ["true"]
  depends_on = [exec.other]
  count      = 2
}
