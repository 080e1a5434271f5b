// Package election elects one leader among the fog servers that share a store, and fences a
// deposed one: it follows etcd's concurrency.Election (client/v3/concurrency/election.go).
// A candidate creates the election key, if absent, bound to a lease it keeps alive; the
// key's revision at creation is the leader's token, and every write the leader makes
// carries a compare on it (Guard), so a leader that lost its lease (a pause, a partition)
// cannot write any more: its transactions fail with ErrNotLeader.
package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/store"
)

// ErrNotLeader means a write carried the token of a leadership that has ended.
var ErrNotLeader = errors.New("election: not the leader any more")

// Config configures an Elector.
type Config struct {
	// Key is the election key.
	Key string
	// ID names this candidate (host and process), stored as the key's value.
	ID string
	// TTL is the leader's lease: a leader that stops renewing is replaced this long after
	// its last renewal.
	TTL time.Duration
}

// Elector campaigns for leadership.
type Elector struct {
	cfg Config
	st  store.Store
	log *slog.Logger
}

// New returns an elector.
func New(cfg Config, st store.Store, log *slog.Logger) *Elector {
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Second
	}
	return &Elector{cfg: cfg, st: st, log: log}
}

// Run campaigns until ctx ends. While this candidate leads it runs lead with a context that
// ends when the leadership does and a store whose every transaction carries the leader's
// token. Run returns after lead has returned and the leadership is given up.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, st store.Store)) error {
	for ctx.Err() == nil {
		lease, rev, err := e.campaign(ctx)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("campaign for leadership", "err", err)
				sleep(ctx, e.cfg.TTL/4)
			}
			continue
		}
		e.log.Info("leading", "id", e.cfg.ID, "token", rev)
		e.hold(ctx, lease, rev, lead)
	}
	return nil
}

// campaign returns once this candidate holds the election key.
func (e *Elector) campaign(ctx context.Context) (store.LeaseID, int64, error) {
	lease, err := e.st.Grant(ctx, e.cfg.TTL)
	if err != nil {
		return 0, 0, err
	}
	for {
		err := e.st.Txn(ctx, []store.Cond{{Key: e.cfg.Key, Rev: 0}},
			[]store.Op{{Key: e.cfg.Key, Value: []byte(e.cfg.ID), Lease: lease}})
		if err == nil {
			kv, err := e.st.Get(ctx, e.cfg.Key)
			if err != nil {
				return 0, 0, err
			}
			return lease, kv.Rev, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			_ = e.st.Revoke(context.WithoutCancel(ctx), lease)
			return 0, 0, err
		}
		// Someone leads: wait for the key to go (its lease expired or was revoked), keeping
		// our own lease alive meanwhile.
		wctx, cancel := context.WithCancel(ctx)
		events := e.st.Watch(wctx, e.cfg.Key)
		tick := time.NewTicker(e.cfg.TTL / 3)
		for gone := false; !gone; {
			if _, err := e.st.Get(wctx, e.cfg.Key); errors.Is(err, store.ErrNotFound) {
				break
			}
			select {
			case <-ctx.Done():
				gone = true
			case <-events:
			case <-tick.C:
				if err := e.st.KeepAlive(ctx, lease); err != nil {
					gone = true
				}
			}
		}
		tick.Stop()
		cancel()
		for range events { //nolint:revive // drain until closed
		}
		if ctx.Err() != nil {
			_ = e.st.Revoke(context.WithoutCancel(ctx), lease)
			return 0, 0, ctx.Err()
		}
		if err := e.st.KeepAlive(ctx, lease); err != nil {
			if lease, err = e.st.Grant(ctx, e.cfg.TTL); err != nil {
				return 0, 0, err
			}
		}
	}
}

// hold renews the lease while lead runs, and ends the leadership when a renewal fails for
// longer than the lease could still be held, or ctx ends (then it resigns at once).
func (e *Elector) hold(ctx context.Context, lease store.LeaseID, rev int64, lead func(context.Context, store.Store)) {
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { lead(lctx, Guard(e.st, e.cfg.Key, rev)) })
	tick := time.NewTicker(e.cfg.TTL / 3)
	defer tick.Stop()
	last := time.Now()
	for lctx.Err() == nil {
		select {
		case <-lctx.Done():
		case <-tick.C:
			sent := time.Now()
			err := e.st.KeepAlive(lctx, lease)
			switch {
			case err == nil:
				last = sent
			case errors.Is(err, store.ErrLeaseNotFound) || time.Since(last) > e.cfg.TTL*2/3:
				e.log.Warn("leadership lost", "id", e.cfg.ID, "err", err)
				cancel()
			}
		}
	}
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		// Resign, so that another server leads without waiting for the lease to expire.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.TTL)
		defer rcancel()
		_ = e.st.Revoke(rctx, lease)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Guard returns a store whose every transaction also requires the election key to be at
// rev: the leadership that rev names. A transaction that fails because the leadership ended
// returns ErrNotLeader rather than store.ErrConflict, so that nothing retries it.
func Guard(st store.Store, key string, rev int64) store.Store {
	return &guarded{Store: st, key: key, rev: rev}
}

type guarded struct {
	store.Store
	key string
	rev int64
}

func (g *guarded) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) error {
	err := g.Store.Txn(ctx, append(conds[:len(conds):len(conds)], store.Cond{Key: g.key, Rev: g.rev}), ops)
	if !errors.Is(err, store.ErrConflict) {
		return err
	}
	if kv, gerr := g.Store.Get(ctx, g.key); gerr != nil || kv.Rev != g.rev {
		return fmt.Errorf("%w (token %d)", ErrNotLeader, g.rev)
	}
	return err
}
