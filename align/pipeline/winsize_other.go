//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package pipeline

// fdColumns returns 0: the width is unknown here ($COLUMNS still applies).
func fdColumns(uintptr) int { return 0 }
