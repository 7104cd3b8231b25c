package eval

import (
	"fmt"
	"io"
)

// WriteTable writes r as YOLOv5 val.py prints it: a header line
// (Class, Images, Labels, P, R, mAP50, mAP50-95), an "all" row, then one row
// per labelled class. Numbers use val.py's formats (%11i and %11.3g).
func (r Result) WriteTable(w io.Writer) error {
	b := fmt.Appendf(nil, "%22s%11s%11s%11s%11s%11s%11s\n", "Class", "Images", "Labels", "P", "R", "mAP50", "mAP50-95")
	row := func(name string, labels int, p, rc, m50, m5095 float64) {
		b = fmt.Appendf(b, "%22s%11d%11d%11.3g%11.3g%11.3g%11.3g\n", name, r.Images, labels, p, rc, m50, m5095)
	}
	row("all", r.Labels, r.Precision, r.Recall, r.MAP50, r.MAP50_95)
	for _, c := range r.PerClass {
		row(c.Name, c.Labels, c.Precision, c.Recall, c.AP50, c.AP50_95)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("eval: writing results table: %w", err)
	}
	return nil
}
