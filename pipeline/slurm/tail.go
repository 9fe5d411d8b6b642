package slurm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
)

// tailer reads a job's output file as it grows, line by line, keeping the
// last lines for the failure message.
type tailer struct {
	path    string
	off     int64
	partial []byte
	last    []string // the last keep lines
	keep    int
}

// maxLine bounds a line passed on; longer ones are cut.
const maxLine = 4096

func newTailer(path string, keep int) *tailer {
	return &tailer{path: path, keep: keep}
}

// read passes on every complete line written since the last call. A file
// that does not exist yet (the job has not started) holds nothing.
func (t *tailer) read(fn func(string)) error {
	f, err := os.Open(t.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < t.off {
		t.off, t.partial = 0, nil // truncated (rewritten by hand): start over
	}
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		t.off += int64(n)
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				t.partial = append(t.partial, data...)
				if len(t.partial) > maxLine {
					t.line(string(t.partial), fn)
					t.partial = t.partial[:0]
				}
				break
			}
			t.partial = append(t.partial, data[:i]...)
			t.line(string(t.partial), fn)
			t.partial = t.partial[:0]
			data = data[i+1:]
		}
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// flush passes on an unterminated last line.
func (t *tailer) flush(fn func(string)) {
	if len(t.partial) > 0 {
		t.line(string(t.partial), fn)
		t.partial = nil
	}
}

func (t *tailer) line(s string, fn func(string)) {
	s = strings.TrimRight(s, "\r")
	if len(s) > maxLine {
		s = s[:maxLine] + "…"
	}
	if t.keep > 0 {
		t.last = append(t.last, s)
		if len(t.last) > t.keep {
			t.last = t.last[len(t.last)-t.keep:]
		}
	}
	fn(s)
}
