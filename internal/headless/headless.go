// Package headless keeps OpenCV's GUI module out of yedge.
//
// gocv compiles its window functions (imshow, waitKey, trackbars, ...)
// into every program that uses it, so the linker records a dependency on
// libopencv_highgui, which Debian builds with Qt 5 and OpenGL: about 80
// more packages on a device, Mesa and LLVM among them, and a larger
// process. yedge is headless and never opens a window. This package
// defines the 16 OpenCV GUI functions that gocv calls, each of which stops
// the program with a message, so the linker resolves them here and leaves
// libopencv_highgui (and with it Qt) out of the binary's dependencies.
//
// The definitions are checked against OpenCV's own declarations
// (opencv2/highgui.hpp) by the compiler: a signature that no longer
// matches fails the build instead of linking the real module again.
// Import it for its effect, from the command only:
//
//	import _ "github.com/yedge/yedge/internal/headless"
package headless

// #cgo pkg-config: opencv4
// #cgo CXXFLAGS: -std=c++11
import "C"
