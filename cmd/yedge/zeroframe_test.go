package main

import (
	"os"
	"testing"

	"gocv.io/x/gocv"
)

// writeZeroFrameVideo writes a valid AVI container holding no frame, the
// way an aborted recording looks.
func writeZeroFrameVideo(t *testing.T, path string) {
	t.Helper()
	w, err := gocv.VideoWriterFile(path, "MJPG", 10, 64, 48, true)
	if err != nil {
		t.Fatal(err)
	}
	if !w.IsOpened() {
		t.Fatal("cannot open a video writer")
	}
	w.Close()
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Fatalf("zero-frame video not written: %v", err)
	}
}
