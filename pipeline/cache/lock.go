package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fileLock is a held flock on a lock file.
type fileLock struct{ f *os.File }

func (l *fileLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}

// tryLock attempts to take a flock (exclusive or shared) on path without
// blocking. It returns (nil, nil) when another holder has it. The lock file
// is created if needed. After locking it checks that path still names the
// locked inode, so that a lock file removed by gc while we waited is never
// mistaken for a live one.
func tryLock(path string, how int) (*fileLock, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, nil
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		var held, now unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &held); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := unix.Stat(path, &now); err == nil && now.Ino == held.Ino && now.Dev == held.Dev {
			return &fileLock{f: f}, nil
		}
		// The file was replaced or removed after we opened it: retry.
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}
}

// lockWait takes a flock on path, polling until it is free or ctx is done.
func lockWait(ctx context.Context, path string, how int) (*fileLock, error) {
	delay := time.Millisecond
	for {
		l, err := tryLock(path, how)
		if err != nil || l != nil {
			return l, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// removeIfUnlocked deletes a lock file when nobody holds it. It reports
// whether the file was removed.
func removeIfUnlocked(path string) (bool, error) {
	l, err := tryLock(path, unix.LOCK_EX)
	if err != nil || l == nil {
		return false, err
	}
	defer l.release()
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return false, err
	}
	return true, nil
}

// isLocked reports whether some process holds a lock on path.
func isLocked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
