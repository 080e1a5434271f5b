package agent

import (
	"errors"
	"fmt"
	"testing"

	"github.com/fogdb/fog/internal/instance"
)

// TestReasonOf: the reason the control plane waits on survives the wrapping of the error
// the agent reports.
func TestReasonOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("promote: %w: up to 0/3000000", ErrNotCaughtUp), instance.ReasonNotCaughtUp},
		{fmt.Errorf("start: %w", ErrNoLease), instance.ReasonNoLease},
		{fmt.Errorf("%w: epoch 3", ErrStaleEpoch), instance.ReasonStaleEpoch},
		{errors.New("connect: refused"), ""},
	} {
		if got := reasonOf(c.err); got != c.want {
			t.Errorf("reasonOf(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
