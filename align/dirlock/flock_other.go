//go:build !unix

package dirlock

import "os"

// tryLock does not lock where flock(2) is missing: the lock file is still
// written for the record.
func tryLock(*os.File) (bool, error) { return false, nil }

func unlock(*os.File) error { return nil }
