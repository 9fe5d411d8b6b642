variable "ranks" {
  type    = map(number)
  default = { r8 = 8, bad = -1 }
  validation {
    condition     = alltrue([for r in values(var.ranks) : r > 0])
    error_message = "Every rank must be positive."
  }
}

stage "exec" "sweep" {
  for_each = var.ranks
  command  = ["echo", each.value]
}
