package fault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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

func TestFailure(t *testing.T) {
	cause := fmt.Errorf("store: get mi/sub/rg/mi1: %w", context.Canceled)
	err := Failure("InternalServerError", "Fog could not complete the request", cause)
	var fe *Error
	if !errors.As(err, &fe) || fe.Class != Internal || fe.Code != "InternalServerError" || len(fe.ErrorID) != 16 {
		t.Fatalf("Failure = %+v", fe)
	}
	want := "Fog could not complete the request (error id " + fe.ErrorID + "). Retry; if it persists, the fog server log has the details under that id."
	if fe.Message != want {
		t.Errorf("Message = %q, want %q", fe.Message, want)
	}
	// Neither what a client is told nor the error's text carries the cause; errors.Is sees it.
	for _, s := range []string{fe.Message, err.Error(), New(BadRequest, "X", "wrapped: %w", err).Error()} {
		if strings.Contains(s, "mi/sub") {
			t.Errorf("%q carries the cause", s)
		}
	}
	if !errors.Is(err, context.Canceled) {
		t.Error("errors.Is(Failure(..., cause), cause's sentinel) = false")
	}
	if other := Failure("InternalServerError", "x", cause).(*Error); other.ErrorID == fe.ErrorID {
		t.Error("two failures have one error id")
	}
	// Logged directly, it shows the cause.
	var direct bytes.Buffer
	slog.New(slog.NewTextHandler(&direct, nil)).Warn("x", "err", err)
	if !strings.Contains(direct.String(), "mi/sub/rg/mi1") {
		t.Errorf("a Failure logged as an attribute does not show its cause: %s", direct.String())
	}
}

func TestLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	cause := errors.New("etcd: connection reset by peer")
	err := Failure("InternalServerError", "Fog could not complete the request", cause)
	id := err.(*Error).ErrorID
	// Wrapped, and wrapped in another Error, it is found; it is logged once however often it
	// is reported.
	Log(log, fmt.Errorf("put: %w", err), "path", "/x")
	Log(log, New(Unavailable, "NoAddressAvailable", "no address: %w", err))
	Log(log, err)
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 1 {
		t.Fatalf("Log of one failure three times wrote %d lines:\n%s", n, out)
	}
	for _, want := range []string{"level=ERROR", "errorId=" + id, "code=InternalServerError", "connection reset by peer", "path=/x"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
	// A Failure whose cause holds another (its text names only the inner one's id) logs both.
	buf.Reset()
	inner := Failure("InternalServerError", "Fog could not read its access control", errors.New("bolt: page 12 corrupt"))
	outer := Failure("StoreUnavailable", "Fog could not check the token", fmt.Errorf("check the roles: %w", inner))
	Log(log, outer)
	for _, want := range []string{"errorId=" + outer.(*Error).ErrorID, "errorId=" + inner.(*Error).ErrorID, "bolt: page 12 corrupt"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log of a Failure in a Failure %q lacks %q", buf.String(), want)
		}
	}
	buf.Reset()
	Log(log, Invalid("InvalidSku", "no"))
	Log(log, errors.New("plain"))
	Log(log, nil)
	if buf.Len() != 0 {
		t.Errorf("Log of errors that are no Failure wrote %q", buf.String())
	}
}
