variable "ranks" {
  type    = list(number)
  default = [8]
}

stage "exec" "sweep" {
  for_each = toset([for r in var.ranks : tostring(r)])
  command  = ["echo", each.key]
}
