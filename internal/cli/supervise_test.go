package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestSupervisorUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"-config", "{}"}, &out, &errb); code != exitUsage {
		t.Errorf("no command: code %d", code)
	}
	if code := Run(context.Background(), []string{"-config", `{"bogus":1}`, "true"}, &out, &errb); code != exitUsage ||
		!strings.Contains(errb.String(), "bogus: unknown field") {
		t.Errorf("bad config: code %d, %q", code, errb.String())
	}
}
