//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sinks

import "syscall"

// dirWritable reports why dir cannot be written to (permissions, read-only
// file system), or nil.
func dirWritable(dir string) error {
	const wOK, xOK = 0x2, 0x1
	return syscall.Access(dir, wOK|xOK)
}
