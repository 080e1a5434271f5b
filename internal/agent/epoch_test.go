package agent

import (
	"errors"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCheckEpoch: an instance never goes back to an older epoch of its group, remembers the
// newest across restarts (the file), and starts over for a new group.
func TestCheckEpoch(t *testing.T) {
	dir := t.TempDir()
	steps := []struct {
		group string
		epoch int64
		stale bool
	}{
		{"g1", 1, false},
		{"g1", 3, false},
		{"g1", 3, false}, // the same epoch again: harmless
		{"g1", 2, true},  // a stale read of the store
		{"g2", 1, false}, // a new group counts from its own start
		{"", 0, false},   // standalone
		{"g2", 1, false},
	}
	for i, s := range steps {
		err := checkEpoch(dir, s.group, s.epoch)
		if got := errors.Is(err, ErrStaleEpoch); got != s.stale || (err != nil && !s.stale) {
			t.Errorf("step %d: checkEpoch(%q, %d) = %v, want stale=%v", i, s.group, s.epoch, err, s.stale)
		}
	}
	e, err := readEpoch(dir)
	if err != nil || e != (seenEpoch{Group: "g2", Epoch: 1}) {
		t.Errorf("readEpoch = %+v, %v; want g2 epoch 1", e, err)
	}
}
