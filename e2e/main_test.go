package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Binaries built once for every test: the autopilot under test and the
// example customers app it supervises.
var (
	autopilotBin string
	customersBin string
	salesBin     string
	// repoRoot is the module root, for the examples' and templates' files.
	repoRoot string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "autopilot-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	autopilotBin = os.Getenv("AUTOPILOT_BIN")
	builds := [][2]string{{"customers", "./examples/customers"}, {"sales", "./examples/sales"}}
	if autopilotBin == "" {
		autopilotBin = filepath.Join(dir, "autopilot")
		builds = append(builds, [2]string{"autopilot", "./cmd/autopilot"})
	}
	customersBin = filepath.Join(dir, "customers")
	salesBin = filepath.Join(dir, "sales")
	for _, b := range builds {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b[0]), b[1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", b[1], err, out)
			return 1
		}
	}
	return m.Run()
}
