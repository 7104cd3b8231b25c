package serve_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
)

// TestSinkRecordsSayWhereFramesCameFrom: the daemon's jsonl records carry
// what `yedge detect` writes (one record builder): pts_ms on a video
// stream, image on an image folder, and "corrupt": true for a truncated
// JPEG (which the decoder reads with a warning).
func TestSinkRecordsSayWhereFramesCameFrom(t *testing.T) {
	if testing.Short() {
		t.Skip("the daemon on a video and a folder (about 10s)")
	}
	dir := t.TempDir()
	folder := testdaemon.ImageFolder(t, 0, 1) // one good image, linked
	good := filepath.Join(folder, "000000000139.jpg")
	jpeg, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(folder, "zz-truncated.jpg")
	if err := os.WriteFile(cut, jpeg[:len(jpeg)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "detections.jsonl")
	cfg := testdaemon.Plan(t, fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
  - name: video
    uri: %s
    loop: true
  - name: folder
    uri: %s
sinks:
  - type: jsonl
    path: %s
    flush_interval: 100ms
shutdown_timeout: 5s
`, testdaemon.Models(t, 1), fixtures.Path(t, "media", "vtest.avi"), folder, out))

	type record struct {
		Stream  string   `json:"stream"`
		Frame   int64    `json:"frame"`
		PTSms   *float64 `json:"pts_ms"`
		Image   string   `json:"image"`
		Corrupt bool     `json:"corrupt"`
	}
	read := func() []record {
		f, err := os.Open(out)
		if err != nil {
			return nil
		}
		defer f.Close()
		var recs []record
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r record
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				recs = append(recs, r)
			}
		}
		return recs
	}
	d := ftStart(t, cfg)
	var recs []record
	testdaemon.Wait(t, "records of both images and of video frames after the first", 30*time.Second, func() bool {
		recs = read()
		video, images := 0, 0
		for _, r := range recs {
			if r.Stream == "video" && r.Frame > 0 {
				video++
			}
			if r.Stream == "folder" {
				images++
			}
		}
		return video > 0 && images == 2
	})
	d.stop()

	byImage := map[string]record{}
	for _, r := range recs {
		switch r.Stream {
		case "video":
			// The first frame's position is 0, which the record leaves out.
			if (r.Frame > 0 && (r.PTSms == nil || *r.PTSms <= 0)) || r.Image != "" || r.Corrupt {
				t.Errorf("video record %+v: want pts_ms > 0 after the first frame, no image, not corrupt", r)
			}
		case "folder":
			byImage[r.Image] = r
		}
	}
	if r, ok := byImage[good]; !ok || r.Corrupt {
		t.Errorf("the good image's record %+v (found %v): want image %s, not corrupt", r, ok, good)
	}
	if r, ok := byImage[cut]; !ok || !r.Corrupt {
		t.Errorf("the truncated image's record %+v (found %v): want image %s and corrupt", r, ok, cut)
	}
}
