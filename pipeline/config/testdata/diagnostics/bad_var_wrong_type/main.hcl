variable "rank" {
  type    = number
  default = 8
}

variable "opts" {
  type    = object({ lr = number, wd = optional(number, 0) })
  default = { lr = 0.1 }
}

stage "exec" "prep" {
  command = ["echo", var.rank, var.opts.lr]
}
