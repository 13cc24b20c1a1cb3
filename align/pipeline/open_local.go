//go:build cgo

package pipeline

import "github.com/align-dev/align/align/backend/local"

// openLocal opens a local: backend (needs cgo: it runs the model in-process).
func openLocal(b *Backend, path string, o local.Options) error {
	l, err := local.Open(path, o)
	if err != nil {
		return err
	}
	b.Generator, b.Judge, b.Screener, b.close = l, l, l, l.Close
	return nil
}
