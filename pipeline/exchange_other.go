//go:build !linux

package pipeline

import "errors"

// exchange is unavailable here; callers fall back to two renames.
func exchange(a, b string) error { return errors.New("atomic exchange not supported") }
