package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestUnavailableAtTheDeadline: etcd 3.4 answers a request whose deadline ran out on its side
// with an untyped status (code Unknown); when this side's deadline is that close too, it is
// the store not answering (503 to a client), not a failure of Fog's own (500). The same status
// early in the request is not.
func TestUnavailableAtTheDeadline(t *testing.T) {
	serverGaveUp := status.Error(codes.Unknown, "context deadline exceeded")
	near, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := unavailable(near, serverGaveUp); !errors.Is(err, ErrUnavailable) {
		t.Errorf("at the deadline: %v, want ErrUnavailable", err)
	}
	far, cancel2 := context.WithTimeout(context.Background(), callTimeout)
	defer cancel2()
	if err := unavailable(far, serverGaveUp); errors.Is(err, ErrUnavailable) {
		t.Errorf("far from the deadline: %v, want it as it is", err)
	}
	if err := unavailable(far, status.Error(codes.Unavailable, "x")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("codes.Unavailable: %v, want ErrUnavailable", err)
	}
}
