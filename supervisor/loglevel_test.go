package supervisor

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestLogLevel(t *testing.T) {
	var buf bytes.Buffer
	log, level := withLogLevel(zerolog.New(&buf).Level(zerolog.InfoLevel))
	derived := log.With().Str("service", "web").Logger() // as services and backends make theirs
	tests := []struct {
		name  string
		level zerolog.Level // NoLevel: leave as started
		want  string        // the levels that show, of debug, info, warn, error
	}{
		{"the given logger's level", zerolog.NoLevel, "info warn error"},
		{"debug", zerolog.DebugLevel, "debug info warn error"},
		{"warn", zerolog.WarnLevel, "warn error"},
		{"error", zerolog.ErrorLevel, "error"},
		{"info", zerolog.InfoLevel, "info warn error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.level != zerolog.NoLevel {
				level.set(tt.level)
			}
			for _, l := range []zerolog.Logger{log, derived} {
				buf.Reset()
				for _, lv := range []zerolog.Level{zerolog.DebugLevel, zerolog.InfoLevel, zerolog.WarnLevel, zerolog.ErrorLevel} {
					l.WithLevel(lv).Msg(lv.String())
				}
				var got []string
				for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
					if line != "" {
						got = append(got, line[strings.LastIndex(line, `"message":"`)+11:len(line)-2])
					}
				}
				if g := strings.Join(got, " "); g != tt.want {
					t.Errorf("logged %q, want %q", g, tt.want)
				}
			}
		})
	}

	nop, level := withLogLevel(zerolog.Nop())
	level.set(zerolog.DebugLevel)
	if nop.Error().Enabled() {
		t.Error("a disabled logger was enabled")
	}
}
