//go:build linux || darwin || freebsd || netbsd || openbsd

package pipeline

import (
	"syscall"
	"unsafe"
)

// fdColumns returns the width of the terminal on fd, or 0.
func fdColumns(fd uintptr) int {
	var ws struct{ Row, Col, X, Y uint16 }
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&ws)))
	if errno != 0 {
		return 0
	}
	return int(ws.Col)
}
