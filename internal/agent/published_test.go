package agent_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/agent/agenttest"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/store"
)

// recordStore refuses agent records while refuse is set.
type recordStore struct {
	store.Store
	refuse atomic.Bool
}

func (s *recordStore) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) error {
	if s.refuse.Load() && slices.ContainsFunc(ops, func(op store.Op) bool { return op.Key == instance.AgentKey("eastus") }) {
		return errors.New("store unreachable")
	}
	return s.Store.Txn(ctx, conds, ops)
}

// TestPublishedOnlyOnceTheRecordIsIn: an agent says it is ready (Published) only once its
// record, with the address ranges the control plane places instances in, is in the store;
// while the store refuses the write it does not.
func TestPublishedOnlyOnceTheRecordIsIn(t *testing.T) {
	dir := t.TempDir()
	bolt, err := store.OpenBolt(filepath.Join(dir, "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	st := &recordStore{Store: bolt}
	st.refuse.Store(true) // the store does not take the agent record yet
	a, err := agent.New(agent.Config{Region: "eastus", Dir: filepath.Join(dir, "eastus"), Resync: 50 * time.Millisecond,
		Record:  instance.AgentRecord{AddressFirst: "127.0.0.10", AddressLast: "127.0.0.20"},
		Servers: agenttest.NewNet(filepath.Join(dir, "instances")).Server}, st, nil, issuer{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case <-a.Published():
		t.Fatal("published while the store refused the agent record")
	case <-time.After(300 * time.Millisecond):
	}
	st.refuse.Store(false)
	select {
	case <-a.Published():
	case <-time.After(5 * time.Second):
		t.Fatal("not published 5 s after the store took writes again")
	}
	var rec instance.AgentRecord
	if _, err := store.Get(context.Background(), bolt, instance.AgentKey("eastus"), &rec); err != nil || rec.AddressFirst != "127.0.0.10" {
		t.Errorf("published, but the agent record reads %+v (%v)", rec, err)
	}
}
