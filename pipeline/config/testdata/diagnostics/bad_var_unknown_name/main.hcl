variable "rank" {
  type    = number
  default = 8
}

stage "exec" "prep" {
  command = ["echo", var.rank]
}
