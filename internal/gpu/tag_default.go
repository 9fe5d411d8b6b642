//go:build !nonvml

package gpu

// nonvmlTag reports whether the build excludes NVML on purpose.
const nonvmlTag = false
