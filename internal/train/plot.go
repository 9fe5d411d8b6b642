package train

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"strconv"
)

// glyphs is a 3x5 pixel font for the characters the plot writes; each
// glyph is five rows of three bits, top row first, MSB left.
var glyphs = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 2, 2},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7}, '.': {0, 0, 0, 0, 2}, '-': {0, 0, 7, 0, 0},
	'a': {0, 7, 1, 7, 7}, 'e': {7, 5, 7, 4, 7}, 'i': {2, 0, 2, 2, 2}, 'l': {6, 2, 2, 2, 7},
	'n': {0, 6, 5, 5, 5}, 'o': {0, 7, 5, 5, 7}, 'p': {7, 5, 7, 4, 4}, 'r': {0, 7, 4, 4, 4},
	's': {0, 3, 4, 1, 6}, 't': {2, 7, 2, 2, 3}, 'v': {0, 5, 5, 5, 2}, ':': {0, 2, 0, 2, 0},
	' ': {},
}

const glyphScale = 2

func drawText(img *image.RGBA, x, y int, s string, c color.Color) {
	for _, r := range s {
		g := glyphs[r]
		for row := 0; row < 5; row++ {
			for col := 0; col < 3; col++ {
				if g[row]>>(2-col)&1 == 1 {
					for dy := 0; dy < glyphScale; dy++ {
						for dx := 0; dx < glyphScale; dx++ {
							img.Set(x+col*glyphScale+dx, y+row*glyphScale+dy, c)
						}
					}
				}
			}
		}
		x += 4 * glyphScale
	}
}

func textWidth(s string) int { return len(s) * 4 * glyphScale }

func drawLine(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.Set(x0, y0, c)
		img.Set(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

func fmtTick(v float64) string {
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// Curve is one line of a plot: values against optimizer steps.
type Curve struct {
	Label  string
	Steps  []int
	Values []float64
}

// LossPNG renders the training loss (blue) and evaluation loss (orange,
// when present) against the step as a PNG: axes with min/max ticks on
// both, the two curves, and a legend.
func LossPNG(h History) ([]byte, error) {
	if len(h.Train) == 0 {
		return nil, fmt.Errorf("train: loss plot: no training steps")
	}
	tr := Curve{Label: "train loss"}
	for _, p := range h.Train {
		tr.Steps, tr.Values = append(tr.Steps, p.Step), append(tr.Values, p.Loss)
	}
	curves := []Curve{tr}
	if len(h.Eval) > 0 {
		ev := Curve{Label: "eval loss"}
		for _, p := range h.Eval {
			ev.Steps, ev.Values = append(ev.Steps, p.Step), append(ev.Values, p.Loss)
		}
		curves = append(curves, ev)
	}
	return CurvesPNG(curves)
}

// CurvesPNG renders up to four curves on shared axes with a legend.
func CurvesPNG(curves []Curve) ([]byte, error) {
	if len(curves) == 0 || len(curves[0].Steps) == 0 {
		return nil, fmt.Errorf("train: plot: no points")
	}
	const W, H, left, right, top, bottom = 640, 400, 70, 20, 30, 40
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	white, black, grey := color.RGBA{255, 255, 255, 255}, color.RGBA{0, 0, 0, 255}, color.RGBA{220, 220, 220, 255}
	colors := []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}}
	for y := 0; y < H; y++ {
		for x := 0; x < W; x++ {
			img.Set(x, y, white)
		}
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	maxStep := 1
	for _, c := range curves {
		for i, v := range c.Values {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
			maxStep = max(maxStep, c.Steps[i])
		}
	}
	if hi-lo < 1e-9 {
		hi, lo = hi+0.5, lo-0.5
	}
	pw, ph := W-left-right, H-top-bottom
	px := func(step int) int { return left + int(math.Round(float64(step)/float64(maxStep)*float64(pw))) }
	py := func(v float64) int { return top + int(math.Round((hi-v)/(hi-lo)*float64(ph))) }
	// grid and axes
	for i := 0; i <= 4; i++ {
		y := top + i*ph/4
		drawLine(img, left, y, left+pw, y, grey)
		v := hi - float64(i)*(hi-lo)/4
		drawText(img, left-6-textWidth(fmtTick(v)), y-5, fmtTick(v), black)
	}
	drawLine(img, left, top, left, top+ph, black)
	drawLine(img, left, top+ph, left+pw, top+ph, black)
	for _, s := range []int{0, maxStep / 2, maxStep} {
		t := strconv.Itoa(s)
		drawLine(img, px(s), top+ph, px(s), top+ph+4, black)
		drawText(img, px(s)-textWidth(t)/2, top+ph+8, t, black)
	}
	drawText(img, left+pw/2-textWidth("step")/2, H-14, "step", black)
	x := left + 10
	for ci, c := range curves {
		col := colors[ci%len(colors)]
		for i := range c.Steps {
			if i > 0 {
				drawLine(img, px(c.Steps[i-1]), py(c.Values[i-1]), px(c.Steps[i]), py(c.Values[i]), col)
			}
			if len(c.Steps) == 1 {
				drawText(img, px(c.Steps[i])-4, py(c.Values[i])-5, "o", col)
			}
		}
		drawText(img, x, 8, c.Label, col)
		x += textWidth(c.Label + "  ")
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("train: plot: %w", err)
	}
	return buf.Bytes(), nil
}
