package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/autopilot/autopilot/internal/jsonpos"
)

// FuzzParse feeds the whole front end (interpolation, JSON5, dialects,
// validation) arbitrary text: it must never panic or hang, every error must
// wrap ErrConfig, and a place it names must be inside the text.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/corpus/*/*")
	seeds, _ := filepath.Glob("testdata/seed/*")
	for _, p := range append(files, seeds...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{jobs: [{name: 'a', exec: "x", when: {source: 'b', once: 'healthy'}}, {name: 'b', exec: 'y'}]}`))
	f.Add([]byte(`{"port": {{ .PORT }}, "x": "${PORT:-1}" /* c */}`))
	f.Add([]byte("{{ range loop 3 }}{{ end }}{'a': 0x1F, b: +.5e3, c: [1,],}"))
	env := envOf(corpusEnv)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse(data, "f", env)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrConfig) {
			t.Fatalf("error does not wrap ErrConfig: %v", err)
		}
		var pe *jsonpos.Error
		if errors.As(err, &pe) && pe.Line > bytes.Count(data, []byte("\n"))+1 {
			t.Fatalf("line %d outside the text (%d lines): %v", pe.Line, bytes.Count(data, []byte("\n"))+1, err)
		}
	})
}
