variable "rank" {
  type = number
  validation {
    condition     = var.rnak > 0 && local.ok
    error_message = "The rank must be positive, not ${var.rank}."
  }
}

variable "alpha" {
  type    = number
  default = 0
  validation {
    condition     = var.alpha > var.rank
    error_message = "The alpha (${var.alpha}) must exceed the rank (${var.rank})."
  }
}
