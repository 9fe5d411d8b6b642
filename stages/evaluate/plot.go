package evaluate

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"strconv"
)

// glyphs is a 3×5 pixel font (capital shapes for letters); each glyph is
// five rows of three bits, top row first, MSB left.
var glyphs = map[rune][5]uint8{
	'a': {2, 5, 7, 5, 5}, 'b': {6, 5, 6, 5, 6}, 'c': {3, 4, 4, 4, 3}, 'd': {6, 5, 5, 5, 6},
	'e': {7, 4, 6, 4, 7}, 'f': {7, 4, 6, 4, 4}, 'g': {3, 4, 5, 5, 3}, 'h': {5, 5, 7, 5, 5},
	'i': {7, 2, 2, 2, 7}, 'j': {1, 1, 1, 5, 2}, 'k': {5, 5, 6, 5, 5}, 'l': {4, 4, 4, 4, 7},
	'm': {5, 7, 7, 5, 5}, 'n': {6, 5, 5, 5, 5}, 'o': {2, 5, 5, 5, 2}, 'p': {6, 5, 6, 4, 4},
	'q': {2, 5, 5, 6, 3}, 'r': {6, 5, 6, 5, 5}, 's': {3, 4, 2, 1, 6}, 't': {7, 2, 2, 2, 2},
	'u': {5, 5, 5, 5, 7}, 'v': {5, 5, 5, 5, 2}, 'w': {5, 5, 7, 7, 5}, 'x': {5, 5, 2, 5, 5},
	'y': {5, 5, 2, 2, 2}, 'z': {7, 1, 2, 4, 7},
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 2, 2},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7},
	'.': {0, 0, 0, 0, 2}, '-': {0, 0, 7, 0, 0}, '_': {0, 0, 0, 0, 7}, '%': {5, 1, 2, 4, 5},
	':': {0, 2, 0, 2, 0}, '(': {1, 2, 2, 2, 1}, ')': {4, 2, 2, 2, 4}, ' ': {},
	'?': {7, 1, 2, 0, 2},
}

const glyphScale = 2

func drawText(img *image.RGBA, x, y int, s string, c color.Color) {
	for _, r := range s {
		if r >= 'A' && r <= 'Z' {
			r += 'a' - 'A'
		}
		g, ok := glyphs[r]
		if !ok {
			g = glyphs['?']
		}
		for row := range 5 {
			for col := range 3 {
				if g[row]>>(2-col)&1 == 1 {
					fill(img, x+col*glyphScale, y+row*glyphScale, glyphScale, glyphScale, c)
				}
			}
		}
		x += 4 * glyphScale
	}
}

func textWidth(s string) int { return len([]rune(s)) * 4 * glyphScale }

func fill(img *image.RGBA, x, y, w, h int, c color.Color) {
	for dy := range h {
		for dx := range w {
			img.Set(x+dx, y+dy, c)
		}
	}
}

// percentMetrics are drawn as bars on a 0–100 axis: the text scores are
// percentages already, the accuracies are fractions shown ×100.
var percentMetrics = []struct {
	name  string
	scale float64
}{
	{MetricMCAccuracy, 100}, {MetricRewardAccuracy, 100},
	{MetricBLEU4, 1}, {MetricRouge1, 1}, {MetricRouge2, 1}, {MetricRougeL, 1},
}

// formatValue writes counts as whole numbers and other values with four
// decimals.
func formatValue(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 4, 64)
}

// MetricsPNG renders the metrics as a PNG: the accuracies and text scores
// as horizontal bars on a 0–100 % axis, then every other metric (loss,
// perplexity, margins, counts) as a line of text, in name order.
func MetricsPNG(metrics map[string]float64) ([]byte, error) {
	type bar struct {
		label string
		pct   float64
	}
	var bars []bar
	inBars := map[string]bool{}
	for _, p := range percentMetrics {
		if v, ok := metrics[p.name]; ok {
			bars = append(bars, bar{p.name, v * p.scale})
			inBars[p.name] = true
		}
	}
	var lines []string
	for _, k := range sortedKeys(metrics) {
		if !inBars[k] {
			lines = append(lines, k+" "+formatValue(metrics[k]))
		}
	}
	const W, pad, barX, barW, rowH, lineH = 640, 20, 170, 360, 26, 20
	H := pad
	if len(bars) > 0 {
		H += 20 + len(bars)*rowH + 24
	}
	H += len(lines)*lineH + pad
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	white, black, grey := color.RGBA{255, 255, 255, 255}, color.RGBA{0, 0, 0, 255}, color.RGBA{225, 225, 225, 255}
	blue := color.RGBA{31, 119, 180, 255}
	fill(img, 0, 0, W, H, white)
	y := pad
	if len(bars) > 0 {
		drawText(img, pad, y, "scores (%)", black)
		y += 20
		top := y
		bottom := y + len(bars)*rowH
		for _, t := range []int{0, 25, 50, 75, 100} {
			x := barX + barW*t/100
			fill(img, x, top, 1, bottom-top, grey)
			s := strconv.Itoa(t)
			drawText(img, x-textWidth(s)/2, bottom+6, s, black)
		}
		fill(img, barX-1, top, 1, bottom-top, black)
		for i, b := range bars {
			by := top + i*rowH
			drawText(img, pad, by+8, b.label, black)
			w := int(float64(barW) * min(max(b.pct, 0), 100) / 100)
			fill(img, barX, by+4, w, rowH-8, blue)
			drawText(img, barX+w+6, by+8, strconv.FormatFloat(b.pct, 'f', 2, 64), black)
		}
		y = bottom + 24
	}
	for _, l := range lines {
		drawText(img, pad, y+4, l, black)
		y += lineH
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
