// Command plot draws bench's scale figures (the -points JSON of
// `go run ./bench`) as an SVG: median change-to-file against instances for
// the floor (a bare client's time to the answer's last byte), autopilot and
// consul-template, one panel per agent kind. It is its own module so that
// gonum/plot never enters autopilot's dependencies.
//
//	go run . -in points.json -out ../../docs/scale.svg
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// point is one row of bench's -points output.
type point struct {
	Agent         string
	Instances     int
	Floor, AP, CT float64 // ms, both tools running
	// autopilot alone (consul-template stopped) and the floor in that
	// phase, ms; 0 in points files from before these were measured.
	FloorAloneAP, APAlone float64
}

func main() {
	in := flag.String("in", "points.json", "bench -points output")
	out := flag.String("out", "scale.svg", "SVG to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var pts []point
	if err := json.Unmarshal(b, &pts); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	var agents []string
	for _, p := range pts {
		if !slices.Contains(agents, p.Agent) {
			agents = append(agents, p.Agent)
		}
	}
	if len(agents) == 0 {
		return fmt.Errorf("%s: no points", in)
	}
	const w, h = 6 * vg.Inch, 4 * vg.Inch
	canvas := vgsvg.New(w*vg.Length(len(agents)), h)
	dc := draw.New(canvas)
	tiles := draw.Tiles{Rows: 1, Cols: len(agents), PadX: vg.Inch / 4}
	for i, agent := range agents {
		p, err := panel(agent, pts)
		if err != nil {
			return err
		}
		p.Draw(tiles.At(dc, 0, i))
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func panel(agent string, pts []point) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "change-to-file, " + agent
	p.X.Label.Text = "instances"
	p.Y.Label.Text = "median ms"
	p.Legend.Top, p.Legend.Left = true, true
	// Both axes logarithmic: instances span 10x and times 100x.
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	series := []struct {
		name  string
		get   func(point) float64
		color color.RGBA
		dash  []vg.Length
	}{
		{"floor (bare read)", func(p point) float64 { return p.Floor }, color.RGBA{100, 100, 100, 255}, []vg.Length{vg.Points(4), vg.Points(3)}},
		{"autopilot", func(p point) float64 { return p.AP }, color.RGBA{0, 114, 178, 255}, nil},
		{"consul-template", func(p point) float64 { return p.CT }, color.RGBA{213, 94, 0, 255}, nil},
		{"floor, autopilot alone", func(p point) float64 { return p.FloorAloneAP }, color.RGBA{170, 170, 170, 255}, []vg.Length{vg.Points(1), vg.Points(2)}},
		{"autopilot alone", func(p point) float64 { return p.APAlone }, color.RGBA{86, 180, 233, 255}, []vg.Length{vg.Points(6), vg.Points(2)}},
	}
	for _, s := range series {
		var xy plotter.XYs
		for _, pt := range pts {
			if pt.Agent == agent && s.get(pt) > 0 { // a log scale has no 0
				xy = append(xy, plotter.XY{X: float64(pt.Instances), Y: s.get(pt)})
			}
		}
		if len(xy) == 0 {
			continue
		}
		line, dots, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, err
		}
		line.Color, dots.Color = s.color, s.color
		line.Dashes = s.dash
		line.Width = vg.Points(1.5)
		p.Add(line, dots)
		p.Legend.Add(s.name, line, dots)
	}
	p.Add(plotter.NewGrid())
	return p, nil
}
