package quant

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// DefaultTRTCalibHeader is the first line of a TensorRT calibration table
// as TensorRT 8.6's IInt8EntropyCalibrator2 writes it.
const DefaultTRTCalibHeader = "TRT-8601-EntropyCalibration2"

// WriteTRTCalibTable writes a TensorRT calibration table (the calibration
// cache of implicit quantization, what pytorch-quantization's calibrated
// amax becomes for a non-Q/DQ engine): the header line
// (DefaultTRTCalibHeader when header is empty), then one line per tensor
// sorted by name, "<name>: <8 hex digits>", the hex digits being the
// big-endian IEEE-754 bits of float32(amax/127), TensorRT's int8 scale.
// Every amax must be positive and finite, and names non-empty and free of
// line breaks.
func WriteTRTCalibTable(w io.Writer, amax map[string]float64, header string) error {
	if header == "" {
		header = DefaultTRTCalibHeader
	}
	if strings.ContainsAny(header, "\r\n") {
		return fmt.Errorf("TensorRT calibration table header %q contains a line break", header)
	}
	names := make([]string, 0, len(amax))
	for name := range amax {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(header)
	b.WriteByte('\n')
	for _, name := range names {
		a := amax[name]
		if name == "" || strings.ContainsAny(name, "\r\n") {
			return fmt.Errorf("TensorRT calibration table: bad tensor name %q", name)
		}
		scale := float32(a / 127)
		if !(a > 0) || math.IsInf(a, 0) || !(scale > 0) || math.IsInf(float64(scale), 0) {
			return fmt.Errorf("TensorRT calibration table: tensor %q: amax %v gives no positive finite float32 scale", name, a)
		}
		var bits [4]byte
		binary.BigEndian.PutUint32(bits[:], math.Float32bits(scale))
		fmt.Fprintf(&b, "%s: %s\n", name, hex.EncodeToString(bits[:]))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ParseTRTCalibTable reads a TensorRT calibration table as
// WriteTRTCalibTable (or TensorRT) writes it and returns the scale of each
// tensor. The first line must be a "TRT-" header; each further non-empty
// line is "<name>: <8 hex digits>" (split at the last ": ", so names may
// contain colons). Errors give the line number.
func ParseTRTCalibTable(r io.Reader) (map[string]float32, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	out := map[string]float32{}
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if line == 1 {
			if !strings.HasPrefix(text, "TRT-") {
				return nil, fmt.Errorf("TensorRT calibration table line 1: header %q does not start with TRT-", text)
			}
			continue
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		i := strings.LastIndex(text, ": ")
		if i <= 0 {
			return nil, fmt.Errorf("TensorRT calibration table line %d: %q is not \"name: hex\"", line, text)
		}
		name, hx := text[:i], strings.TrimSpace(text[i+2:])
		raw, err := hex.DecodeString(hx)
		if err != nil || len(raw) != 4 {
			return nil, fmt.Errorf("TensorRT calibration table line %d: scale %q is not 8 hex digits", line, hx)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("TensorRT calibration table line %d: tensor %q appears twice", line, name)
		}
		out[name] = math.Float32frombits(binary.BigEndian.Uint32(raw))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("TensorRT calibration table: %w", err)
	}
	if line == 0 {
		return nil, fmt.Errorf("TensorRT calibration table is empty")
	}
	return out, nil
}
