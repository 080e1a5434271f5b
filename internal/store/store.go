// Package store is Fog's persistent state: desired state written by the control plane,
// observed state written by agents, and long-running operations. Store is the interface;
// Bolt is the embedded implementation used by `fog up`.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

var (
	// ErrNotFound means the key does not exist.
	ErrNotFound = errors.New("store: key not found")
	// ErrConflict means a compare in a transaction did not hold.
	ErrConflict = errors.New("store: revision conflict")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrUnavailable means the store did not answer in time (an etcd cluster without a
	// quorum, a partition); the request may be retried later.
	ErrUnavailable = errors.New("store: unavailable")
)

// KV is one stored key with the revision of its last write.
type KV struct {
	Key   string
	Value []byte
	Rev   int64
}

// Cond is a compare that must hold for a transaction to apply: the key's revision equals Rev
// (0 means the key must not exist).
type Cond struct {
	Key string
	Rev int64
}

// Op is a write in a transaction: a put, or a delete when Delete is set. A put with a Lease
// is deleted by the store when that lease expires or is revoked.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
	Lease  LeaseID
}

// Event tells a watcher that a key under its prefix changed.
type Event struct {
	Key     string
	Deleted bool
	// Rev is the store revision of the change (WatchFrom; Watch may leave it 0).
	Rev int64
	// Compacted means the revision a WatchFrom asked for is older than the store keeps: read
	// the prefix again (Snapshot) and watch from the snapshot's revision.
	Compacted bool
}

// LeaseID names a lease.
type LeaseID int64

// ErrLeaseNotFound means the lease expired or was revoked.
var ErrLeaseNotFound = errors.New("store: lease not found")

// Store is the state backend. Every write bumps one global revision, as in etcd, so that
// compares on revisions fence concurrent writers and revisions of different keys order
// their writes.
type Store interface {
	Get(ctx context.Context, key string) (KV, error)
	List(ctx context.Context, prefix string) ([]KV, error)
	// Txn applies ops atomically if every cond holds, else returns ErrConflict.
	Txn(ctx context.Context, conds []Cond, ops []Op) error
	// Watch delivers an event for each later write under prefix until ctx ends. A slow
	// watcher may miss events but never misses that something changed: it gets at least one
	// event after the last write. The channel is closed when ctx ends.
	Watch(ctx context.Context, prefix string) <-chan Event
	// Snapshot reads every key under the prefixes at one revision, which it returns.
	Snapshot(ctx context.Context, prefixes ...string) (int64, []KV, error)
	// WatchFrom delivers, in order and each with its revision, every change under prefix
	// after revision rev, until ctx ends (the channel is then closed). When rev is older than
	// the store keeps, the only event is one with Compacted set.
	WatchFrom(ctx context.Context, prefix string, rev int64) <-chan Event
	// Grant creates a lease that expires ttl after it was granted or last kept alive.
	Grant(ctx context.Context, ttl time.Duration) (LeaseID, error)
	// KeepAlive renews a lease once; ErrLeaseNotFound when it has expired.
	KeepAlive(ctx context.Context, id LeaseID) error
	// Revoke ends a lease at once, deleting its keys.
	Revoke(ctx context.Context, id LeaseID) error
	Close() error
}

// Put writes one key unconditionally.
func Put(ctx context.Context, s Store, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return s.Txn(ctx, nil, []Op{{Key: key, Value: b}})
}

// Get reads and decodes one key, returning its revision.
func Get(ctx context.Context, s Store, key string, v any) (int64, error) {
	kv, err := s.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return kv.Rev, nil
}

// List reads and decodes every key under prefix.
func List[T any](ctx context.Context, s Store, prefix string) ([]T, error) {
	kvs, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(kvs))
	for _, kv := range kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// PutOp encodes v as a put in a transaction.
func PutOp(key string, v any) Op {
	b, err := json.Marshal(v)
	if err != nil {
		// Every type stored is a plain struct; a failure here is a programming error.
		panic(fmt.Sprintf("store: encode %s: %v", key, err))
	}
	return Op{Key: key, Value: b}
}

// Update reads key into a fresh T, applies fn and writes the result if nobody wrote the key
// in between, retrying on conflict. fn returning an error aborts without writing.
func Update[T any](ctx context.Context, s Store, key string, fn func(*T) error) (T, error) {
	for {
		var v T
		rev, err := Get(ctx, s, key, &v)
		if err != nil {
			return v, err
		}
		if err := fn(&v); err != nil {
			return v, err
		}
		err = s.Txn(ctx, []Cond{{Key: key, Rev: rev}}, []Op{PutOp(key, v)})
		if errors.Is(err, ErrConflict) {
			if err := ctx.Err(); err != nil {
				return v, err
			}
			continue
		}
		return v, err
	}
}
