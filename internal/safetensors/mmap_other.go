//go:build !unix

package safetensors

import "os"

// mmapFile is unavailable here: files are read with ReadAt.
func mmapFile(f *os.File, size int64) ([]byte, error) { return nil, nil }

func munmapFile(b []byte) error { return nil }
