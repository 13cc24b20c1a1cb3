package report

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/align-dev/align/align/testgate"
)

func chromium(t *testing.T) string { return testgate.Chromium(t) }

// screenshot renders page at w×h CSS pixels and decodes the PNG.
func screenshot(t *testing.T, bin, page string, w, h int) image.Image {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "page.html")
	shot := filepath.Join(dir, "shot.png")
	if err := os.WriteFile(in, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--window-size="+strconv.Itoa(w)+","+strconv.Itoa(h), "--screenshot="+shot, "file://"+in)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out.String())
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, out.String())
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func rgb(img image.Image, x, y int) (int, int, int) {
	r, g, b, _ := img.At(x, y).RGBA()
	return int(r >> 8), int(g >> 8), int(b >> 8)
}

func inkShare(img image.Image) float64 {
	bd := img.Bounds()
	ink := 0
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			if r, g, b := rgb(img, x, y); r < 235 || g < 235 || b < 235 {
				ink++
			}
		}
	}
	return float64(ink) / float64(bd.Dx()*bd.Dy())
}

// TestScreenshotDrawsTheData renders one chart of the training loss in
// headless Chromium and checks that the screenshot is not blank and that
// at every data point's position the series colour is on screen.
func TestScreenshotDrawsTheData(t *testing.T) {
	bin := chromium(t)
	m, err := LoadMetrics("testdata/metrics.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	s := m.SeriesOf("train", "loss")
	svg := LineChart(Chart{ID: "loss", Title: "Loss", YLabel: "loss", Series: []Series{s}})
	page := "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>body{margin:0;background:#fff}</style></head><body>" + svg + "</body></html>"
	img := screenshot(t, bin, page, chartW, chartH)
	if share := inkShare(img); share < 0.01 {
		t.Fatalf("screenshot is blank (%.2f%% ink)", 100*share)
	}
	pts := pointRe.FindAllStringSubmatch(svg, -1)
	if len(pts) != len(s.Points) || len(pts) == 0 {
		t.Fatalf("%d circles for %d points", len(pts), len(s.Points))
	}
	// palette[0] is #0072B2; allow anti-aliasing around the centre
	near := func(x, y int) bool {
		for dy := -1; dy <= 1; dy++ {
			for dx := -1; dx <= 1; dx++ {
				r, g, b := rgb(img, x+dx, y+dy)
				if abs(r-0x00) < 60 && abs(g-0x72) < 60 && abs(b-0xB2) < 60 {
					return true
				}
			}
		}
		return false
	}
	for i, p := range pts {
		cx, _ := strconv.ParseFloat(p[1], 64)
		cy, _ := strconv.ParseFloat(p[2], 64)
		if !near(int(cx+0.5), int(cy+0.5)) {
			r, g, b := rgb(img, int(cx+0.5), int(cy+0.5))
			t.Errorf("point %d (step %s, loss %s) at (%g, %g): pixel rgb(%d, %d, %d), not the series colour", i, p[3], p[4], cx, cy, r, g, b)
		}
	}
	// a control: the middle of the empty band above the highest point is
	// not the series colour (the check above can fail)
	if r, g, b := rgb(img, padL+5, chartH-padB-3); abs(r-0x00) < 60 && abs(g-0x72) < 60 && abs(b-0xB2) < 60 {
		t.Errorf("control pixel is the series colour: the colour check cannot tell")
	}
}

func TestScreenshotWholePage(t *testing.T) {
	bin := chromium(t)
	p, err := LoadRun("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Render(&buf, p); err != nil {
		t.Fatal(err)
	}
	img := screenshot(t, bin, buf.String(), 1360, 1400)
	if share := inkShare(img); share < 0.03 {
		t.Errorf("page screenshot nearly blank (%.2f%% ink)", 100*share)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
