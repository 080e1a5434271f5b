package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/store"
)

// deafToOps is a leader's store whose watch of the operations never reports anything: an
// operation it drives was started by a kick (or a resync).
type deafToOps struct{ store.Store }

func (d deafToOps) Watch(ctx context.Context, prefix string) <-chan store.Event {
	if strings.HasPrefix(engine.OpPrefix, prefix) {
		ch := make(chan store.Event)
		go func() { <-ctx.Done(); close(ch) }()
		return ch
	}
	return d.Store.Watch(ctx, prefix)
}

// TestAcceptedOperationIsKicked: the controller that accepts a request through its API is the
// one that leads, through the leader's own store; the operation starts at once, not at the
// next resync (here an hour away, and the store's watch of operations says nothing).
func TestAcceptedOperationIsKicked(t *testing.T) {
	ctx, _, c, stop := startWorld(t)
	defer stop()
	c.resync = time.Hour
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = c.Lead(lctx, deafToOps{c.st}); close(done) }()
	defer func() { cancel(); <-done }()
	// Lead lists the operations once as it starts; the request comes after that.
	time.Sleep(100 * time.Millisecond)
	op, aerr := c.Failover(ctx, "sub", "rg-s", "westus", "fg", false)
	if aerr != nil {
		t.Fatal(aerr)
	}
	got := waitOutcomeOnly(t, c, op.ID, 10*time.Second)
	if got.status != arm.StatusSucceeded || got.primary != 1 {
		t.Errorf("outcome = %s with primary side %d (%v), want Succeeded on side 1", got.status, got.primary, got.op.Error)
	}
}
