package config

import (
	"os"
	"testing"
)

// BenchmarkParse is the whole front end on the largest corpus configs.
func BenchmarkParse(b *testing.B) {
	for _, f := range []string{"testdata/corpus/v3/full-schema.json5", "testdata/corpus/v2/nginx.json"} {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(f[len("testdata/corpus/"):], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(data, f, envOf(corpusEnv)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseConfigV2 is the front end on a typical 1 KB ContainerPilot
// 2 config (three services, three backends): the parse on the supervisor's
// way from its start to its app's fork.
func BenchmarkParseConfigV2(b *testing.B) {
	const f = "testdata/bench/v2-three-services.json"
	data, err := os.ReadFile(f)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, f, nil); err != nil {
			b.Fatal(err)
		}
	}
}
