package cli

import "testing"

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, gcPercentSmall},
		{1 << 20, gcPercentSmall},
		{gcSmallHeap - 1, gcPercentSmall},
		{gcSmallHeap, gcPercentLarge},
		{200 << 20, gcPercentLarge},
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}
