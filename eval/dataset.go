package eval

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/yedge/yedge/classnames"
	"github.com/yedge/yedge/internal/fsx"
)

// Box is an axis-aligned box in pixels, with X1 <= X2 and Y1 <= Y2.
type Box struct{ X1, Y1, X2, Y2 float64 }

// Prediction is one detection of a model: a box, its confidence score and its
// class index.
type Prediction struct {
	Box   Box
	Score float64
	Class int
}

// Label is one ground-truth object: a box and its class index.
type Label struct {
	Box   Box
	Class int
}

// Dataset is a YOLO-format dataset folder:
//
//	<Root>/images/*.jpg|jpeg|png|bmp|webp
//	<Root>/labels/<stem>.txt   (one "class cx cy w h" line per object)
//	<Root>/data.yaml           (optional; `names` and/or `nc`)
type Dataset struct {
	// Root is the absolute path of the dataset folder.
	Root string
	// Names holds the class names indexed by class id, from data.yaml. It
	// is nil when the dataset has no data.yaml. Ids missing from a `names`
	// map are "".
	Names []string
	// Images holds the absolute paths of the images, sorted by file name.
	Images []string
}

// imageExts are the image file extensions LoadDataset picks up
// (compared case-insensitively).
var imageExts = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".bmp": true, ".webp": true}

// maxClasses bounds class ids read from data.yaml and label files, so that a
// corrupt file cannot make the package allocate a huge slice.
const maxClasses = 1 << 20

// LoadDataset opens the YOLO-format dataset in dir. It fails when dir is
// missing or not a folder, when it has no images/ folder or that folder
// holds no image, and when data.yaml is present but cannot be used. A missing
// data.yaml is not an error: Names is then nil.
func LoadDataset(dir string) (*Dataset, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("eval: dataset %s: %w", dir, err)
	}
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("eval: dataset %s: %w", root, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("eval: dataset %s: not a directory", root)
	}
	imgDir := filepath.Join(root, "images")
	st, err = os.Stat(imgDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("eval: dataset %s: no images/ folder", root)
	}
	if err != nil {
		return nil, fmt.Errorf("eval: dataset %s: %w", root, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("eval: dataset %s: %s is not a directory", root, imgDir)
	}
	entries, err := os.ReadDir(imgDir)
	if err != nil {
		return nil, fmt.Errorf("eval: dataset %s: %w", root, err)
	}
	var names []string
	for _, e := range entries {
		if !imageExts[strings.ToLower(filepath.Ext(e.Name()))] {
			continue
		}
		if e.IsDir() {
			continue
		}
		if e.Type()&fs.ModeSymlink != 0 { // follow links, keep only files
			if fi, err := os.Stat(filepath.Join(imgDir, e.Name())); err != nil || fi.IsDir() {
				continue
			}
		}
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("eval: dataset %s: no images (*.jpg, *.jpeg, *.png, *.bmp, *.webp) in %s", root, imgDir)
	}
	sort.Strings(names)
	ds := &Dataset{Root: root, Images: make([]string, len(names))}
	for i, n := range names {
		ds.Images[i] = filepath.Join(imgDir, n)
	}
	ds.Names, err = readDataYAML(filepath.Join(root, "data.yaml"))
	if err != nil {
		return nil, err
	}
	return ds, nil
}

// readDataYAML returns the class names declared in a data.yaml file, or nil
// when the file does not exist.
func readDataYAML(path string) ([]string, error) {
	data, err := fsx.ReadFile(path, fsx.MaxLabelBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("eval: %s: %w", path, err)
	}
	names, err := classnames.ParseYAML(data)
	if err != nil {
		return nil, fmt.Errorf("eval: %s: %w", path, err)
	}
	return names, nil
}

// LabelPath returns the label file of an image, following the YOLOv5
// convention: the last "images" element of the path becomes "labels" and the
// extension becomes ".txt" (.../images/x.jpg -> .../labels/x.txt).
func LabelPath(imagePath string) string {
	sep := string(filepath.Separator)
	dir, file := filepath.Split(imagePath)
	if ext := filepath.Ext(file); ext != "" && ext != file {
		file = strings.TrimSuffix(file, ext)
	}
	file += ".txt"
	imgs, lbls := sep+"images"+sep, sep+"labels"+sep
	switch {
	case strings.Contains(dir, imgs):
		i := strings.LastIndex(dir, imgs)
		dir = dir[:i] + lbls + dir[i+len(imgs):]
	case strings.HasPrefix(dir, "images"+sep):
		dir = "labels" + sep + dir[len("images"+sep):]
	}
	return dir + file
}

// ReadLabels reads the YOLO label file at path for an image of width x
// height pixels; see [ParseLabels]. A missing file means the image has no
// objects and yields (nil, nil). Errors name the file.
func ReadLabels(path string, width, height int) ([]Label, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("eval: labels %s: %w", path, err)
	}
	labels, err := ParseLabels(f, width, height)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("eval: labels %s: %w", path, err)
	}
	return labels, nil
}

// ParseLabels parses YOLO label lines "class cx cy w h", the four box values
// normalized to 0..1, into pixel boxes of an image of width x height pixels.
//
// Blank lines are skipped. Like YOLOv5's dataloader (verify_image_label),
// it rejects any line that does not have exactly 5 numeric columns, a class
// that is not a non-negative integer, NaN or infinite values, and box values
// below 0 or above 1; the error names the line. Boxes are clipped to the
// image, as val.py's scale_coords does, and rows that are exact duplicates
// (compared as float32, like YOLOv5's np.unique) are removed; when that
// happens the remaining rows are sorted the way np.unique sorts them.
func ParseLabels(r io.Reader, width, height int) ([]Label, error) {
	return parseLabels(r, width, height, nil)
}

// BadClassError is a label whose class id is outside the model's classes.
type BadClassError struct {
	// File is the label file and Line the 1-based line of the label.
	File string
	Line int
	// Class is the label's class id; Classes is the model's class count.
	Class, Classes int
}

// Error names the file and line as FILE:LINE.
func (e *BadClassError) Error() string {
	return fmt.Sprintf("%s:%d: class %d is outside the model's %d classes (0..%d)", e.File, e.Line, e.Class, e.Classes, e.Classes-1)
}

// ReadLabelsClasses reads a label file like ReadLabels and checks every
// class id against classes, the number of classes of the model (0: not
// checked). A class id >= classes is an error (*BadClassError naming the
// file and line); with drop, such labels are removed instead and returned
// in bad, so that the caller can count and report them. A label is never
// scored under a class the model cannot predict.
func ReadLabelsClasses(path string, width, height, classes int, drop bool) (labels []Label, bad []*BadClassError, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("eval: labels %s: %w", path, err)
	}
	defer f.Close()
	check := func(line, class int) (bool, error) {
		if classes <= 0 || class < classes {
			return true, nil
		}
		e := &BadClassError{File: path, Line: line, Class: class, Classes: classes}
		if !drop {
			return false, e
		}
		bad = append(bad, e)
		return false, nil
	}
	labels, err = parseLabels(f, width, height, check)
	if err != nil {
		var be *BadClassError
		if errors.As(err, &be) {
			return nil, nil, fmt.Errorf("eval: labels %w", be)
		}
		return nil, nil, fmt.Errorf("eval: labels %s: %w", path, err)
	}
	return labels, bad, nil
}

// parseLabels is ParseLabels with check called on each label's line number
// and class: it keeps the label, drops it, or fails the parse.
func parseLabels(r io.Reader, width, height int, check func(line, class int) (bool, error)) ([]Label, error) {
	if width <= 0 || height <= 0 {
		return nil, fmt.Errorf("invalid image size %dx%d", width, height)
	}
	type row struct {
		v   [5]float32 // as YOLOv5 holds it, for duplicate detection
		lab Label
	}
	var rows []row
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if n == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // UTF-8 BOM
		}
		if f := strings.Fields(string(line)); len(f) > 0 {
			lab, v, perr := parseLabelLine(f, width, height)
			if perr != nil {
				return nil, fmt.Errorf("line %d: %w", n, perr)
			}
			keep := true
			if check != nil {
				var cerr error
				if keep, cerr = check(n, lab.Class); cerr != nil {
					return nil, cerr
				}
			}
			if keep {
				rows = append(rows, row{v, lab})
			}
		}
		if err != nil { // io.EOF
			break
		}
	}
	if len(rows) == 0 {
		return nil, nil
	}
	// np.unique(lb, axis=0): drop duplicate rows; only then is the order
	// changed (lexicographic by class, cx, cy, w, h).
	sorted := make([]row, len(rows))
	copy(sorted, rows)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i].v, sorted[j].v
		for k := range a {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		return false
	})
	uniq := sorted[:1]
	for _, rw := range sorted[1:] {
		if rw.v != uniq[len(uniq)-1].v {
			uniq = append(uniq, rw)
		}
	}
	if len(uniq) < len(rows) {
		rows = uniq
	}
	labels := make([]Label, len(rows))
	for i, rw := range rows {
		labels[i] = rw.lab
	}
	return labels, nil
}

// parseLabelLine converts the fields of one label line.
func parseLabelLine(f []string, width, height int) (Label, [5]float32, error) {
	var v [5]float64
	var v32 [5]float32
	if len(f) != 5 {
		return Label{}, v32, fmt.Errorf("want 5 columns (class cx cy w h), got %d", len(f))
	}
	what := [5]string{"class", "cx", "cy", "w", "h"}
	for i, s := range f {
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Label{}, v32, fmt.Errorf("%s: %q is not a number", what[i], s)
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return Label{}, v32, fmt.Errorf("%s: %q is not finite", what[i], s)
		}
		if x < 0 {
			return Label{}, v32, fmt.Errorf("%s: negative value %s", what[i], s)
		}
		if i > 0 && x > 1 {
			return Label{}, v32, fmt.Errorf("%s: %s is not normalized to [0, 1]", what[i], s)
		}
		v[i], v32[i] = x, float32(x)
	}
	if v[0] != math.Trunc(v[0]) || v[0] >= maxClasses {
		return Label{}, v32, fmt.Errorf("class: %q is not an integer class id below %d", f[0], maxClasses)
	}
	w, h := float64(width), float64(height)
	cx, cy, bw, bh := v[1], v[2], v[3], v[4]
	box := Box{
		X1: clip(w*(cx-bw/2), w),
		Y1: clip(h*(cy-bh/2), h),
		X2: clip(w*(cx+bw/2), w),
		Y2: clip(h*(cy+bh/2), h),
	}
	return Label{Box: box, Class: int(v[0])}, v32, nil
}

// clip clamps x to [0, hi].
func clip(x, hi float64) float64 {
	return math.Min(math.Max(x, 0), hi)
}
