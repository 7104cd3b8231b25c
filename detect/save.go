package detect

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/fsx"
	"github.com/yedge/yedge/source"
)

// saver writes annotated frames to a folder of JPEGs or a video file. Every
// failure to write is an OutputError naming the path: an output the user
// asked for is never silently missing.
type saver struct {
	dir     string
	path    string
	fps     float64
	writer  *gocv.VideoWriter
	created bool // path did not exist before: an empty one is ours to remove
	frames  int
}

// videoExt are the video containers Save writes, with their codec.
var videoExt = map[string]string{".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}

// saveErr is an OutputError of Save.
func saveErr(path string, usage bool, err error) error {
	return &OutputError{Output: OutputSave, Path: path, Usage: usage, Err: err}
}

// newSaver prepares the Save output and checks now that it can be
// created: a video file is opened for writing, a folder is created.
func newSaver(path string, spec source.Spec) (*saver, error) {
	s := &saver{}
	if path == "" {
		return s, nil
	}
	if _, ok := videoExt[strings.ToLower(filepath.Ext(path))]; ok {
		dir := filepath.Dir(path)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, saveErr(path, true, fmt.Errorf("folder %q does not exist", dir))
		}
		_, statErr := os.Stat(path)
		fd, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return nil, saveErr(path, false, fmt.Errorf("cannot create the file: %w", unwrapPathError(err)))
		}
		fd.Close()
		s.path, s.fps, s.created = path, 10, statErr != nil
		return s, nil
	}
	// A folder: it must not be the source folder (annotated frames would
	// replace the images).
	if spec.Kind == source.Folder {
		if err := fsx.RefuseOverwrite(path, spec.URI); err != nil {
			return nil, saveErr(path, true, err)
		}
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, saveErr(path, false, fmt.Errorf("cannot create the folder: %w", unwrapPathError(err)))
	}
	s.dir = path
	return s, nil
}

// unwrapPathError drops the path from an *os.PathError (the caller names it).
func unwrapPathError(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return pe.Err
	}
	return err
}

func (s *saver) active() bool { return s.dir != "" || s.path != "" }

// Write saves one annotated frame.
func (s *saver) Write(img gocv.Mat, fr source.Frame) error {
	if s.dir != "" {
		name := fmt.Sprintf("frame_%06d.jpg", fr.Index)
		if fr.Name != "" {
			name = strings.TrimSuffix(filepath.Base(fr.Name), filepath.Ext(fr.Name)) + ".jpg"
		}
		p := filepath.Join(s.dir, name)
		if err := fsx.RefuseOverwrite(p, fr.Name); err != nil {
			return saveErr(s.dir, true, err)
		}
		if !gocv.IMWrite(p, img) {
			return saveErr(s.dir, false, fmt.Errorf("cannot write %q", p))
		}
		s.frames++
		return nil
	}
	codec := videoExt[strings.ToLower(filepath.Ext(s.path))]
	if s.writer == nil {
		w, err := gocv.VideoWriterFile(s.path, codec, s.fps, img.Cols(), img.Rows(), true)
		if err != nil {
			return saveErr(s.path, false, fmt.Errorf("cannot open the video writer: %w", err))
		}
		s.writer = w
		if !w.IsOpened() {
			return saveErr(s.path, false, fmt.Errorf("OpenCV cannot open a video writer for this file (codec %s)", codec))
		}
	}
	if err := s.writer.Write(img); err != nil {
		return saveErr(s.path, false, err)
	}
	s.frames++
	return nil
}

// Close finishes the video and checks that the file was really written
// (it exists and is not empty). Closing twice returns nil.
func (s *saver) Close() error {
	if s.path == "" {
		return nil
	}
	path := s.path
	s.path = ""
	if s.writer != nil {
		err := s.writer.Close()
		s.writer = nil
		if err != nil {
			return saveErr(path, false, err)
		}
	}
	st, err := os.Stat(path)
	switch {
	case s.frames == 0:
		if s.created && err == nil && st.Size() == 0 {
			os.Remove(path) // the empty file this run created
		}
		return nil
	case err != nil:
		return saveErr(path, false, fmt.Errorf("the video was not written: %w", unwrapPathError(err)))
	case st.Size() == 0:
		return saveErr(path, false, fmt.Errorf("the video file is empty after %d frames", s.frames))
	}
	return nil
}
