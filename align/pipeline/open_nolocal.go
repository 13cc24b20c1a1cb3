//go:build !cgo

package pipeline

import (
	"errors"

	"github.com/align-dev/align/align/backend/local"
)

// openLocal: this build has no cgo, so no in-process models.
func openLocal(*Backend, string, local.Options) error {
	return errors.New("local: backends need a cgo build of align (make)")
}
