package fault

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestError(t *testing.T) {
	cause := fmt.Errorf("store: get x: %w", context.DeadlineExceeded)
	err := fmt.Errorf("put instance: %w", New(Unavailable, "ServiceUnavailable", "Fog could not read: %w.", cause))
	var fe *Error
	if !errors.As(err, &fe) || fe.Class != Unavailable || fe.Code != "ServiceUnavailable" || fe.Message != "Fog could not read: store: get x: context deadline exceeded." {
		t.Fatalf("errors.As(%v) = %+v", err, fe)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false, want true", err)
	}
	for _, c := range []struct {
		err      error
		busy, nf bool
	}{
		{Busy("group '%s' is failing over", "g"), true, false},
		{New(Conflict, "ConflictingServerOperation", "busy"), false, false},
		{New(NotFound, "ResourceNotFound", "gone"), false, true},
		{fmt.Errorf("wrapped: %w", Busy("x")), true, false},
		{Invalid("InvalidSku", "no"), false, false},
	} {
		if got := errors.Is(c.err, ErrBusy); got != c.busy {
			t.Errorf("errors.Is(%v, ErrBusy) = %v, want %v", c.err, got, c.busy)
		}
		if got := errors.Is(c.err, ErrNotFound); got != c.nf {
			t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", c.err, got, c.nf)
		}
	}
}
