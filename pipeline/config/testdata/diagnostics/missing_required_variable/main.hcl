variable "opts" {
  type = object({ lr = number, wd = optional(number, 0) })
}

stage "exec" "prep" {
  command = ["train", "${var.opts.lr}"]
}
