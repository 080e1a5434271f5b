package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketKV     = []byte("kv")
	bucketMeta   = []byte("meta")
	bucketLeased = []byte("leased") // key -> lease id, for keys written with a lease
	keyRev       = []byte("rev")
)

// historySize is how many recent changes a Bolt keeps for WatchFrom; an older revision gets
// a Compacted event.
const historySize = 8192

// Bolt is a Store in one bbolt file. Values are stored as an 8-byte revision followed by the
// value bytes. Leases live in memory: the process that holds the file is the only client, so
// when it restarts every lease has ended and the keys written with one are deleted at open.
type Bolt struct {
	db *bolt.DB

	mu       sync.Mutex
	watchers map[*watcher]struct{}
	streams  map[*stream]struct{}
	// history holds the latest changes in revision order.
	history []Event
	// oldest is the first revision WatchFrom can replay from.
	oldest int64
	leases map[LeaseID]*boltLease
	nextID LeaseID

	stop chan struct{}
	wg   sync.WaitGroup
}

type boltLease struct {
	ttl      time.Duration
	deadline time.Time
	keys     map[string]bool
}

type watcher struct {
	prefix string
	ch     chan Event
}

// stream is a WatchFrom subscription: an ordered, unbounded queue drained by its goroutine.
type stream struct {
	prefix  string
	pending []Event
	wake    chan struct{}
}

// OpenBolt opens (creating if needed) the store file at path. A second process opening the
// same file waits up to a second for the lock and then fails, so two `fog up` cannot share a
// data directory.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w (is another fog using this data directory?)", path, err)
	}
	var rev int64
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKV, bucketMeta, bucketLeased} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// The leases of the last process that held the file ended with it.
		kv, leased := tx.Bucket(bucketKV), tx.Bucket(bucketLeased)
		var keys [][]byte
		_ = leased.ForEach(func(k, _ []byte) error { keys = append(keys, append([]byte(nil), k...)); return nil })
		for _, k := range keys {
			if err := kv.Delete(k); err != nil {
				return err
			}
			if err := leased.Delete(k); err != nil {
				return err
			}
		}
		if raw := tx.Bucket(bucketMeta).Get(keyRev); raw != nil {
			rev = int64(binary.BigEndian.Uint64(raw))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	b := &Bolt{db: db, watchers: map[*watcher]struct{}{}, streams: map[*stream]struct{}{},
		oldest: rev + 1, leases: map[LeaseID]*boltLease{}, stop: make(chan struct{})}
	b.wg.Go(b.expireLeases)
	return b, nil
}

func decode(key, raw []byte) KV {
	v := make([]byte, len(raw)-8)
	copy(v, raw[8:])
	return KV{Key: string(key), Rev: int64(binary.BigEndian.Uint64(raw[:8])), Value: v}
}

// Get implements Store.
func (b *Bolt) Get(_ context.Context, key string) (KV, error) {
	var kv KV
	err := b.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketKV).Get([]byte(key))
		if raw == nil {
			return ErrNotFound
		}
		kv = decode([]byte(key), raw)
		return nil
	})
	return kv, err
}

// List implements Store.
func (b *Bolt) List(ctx context.Context, prefix string) ([]KV, error) {
	_, kvs, err := b.Snapshot(ctx, prefix)
	return kvs, err
}

// Snapshot implements Store: one read transaction sees one revision.
func (b *Bolt) Snapshot(_ context.Context, prefixes ...string) (int64, []KV, error) {
	var out []KV
	var rev int64
	err := b.db.View(func(tx *bolt.Tx) error {
		if raw := tx.Bucket(bucketMeta).Get(keyRev); raw != nil {
			rev = int64(binary.BigEndian.Uint64(raw))
		}
		c := tx.Bucket(bucketKV).Cursor()
		for _, prefix := range prefixes {
			p := []byte(prefix)
			for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
				out = append(out, decode(k, v))
			}
		}
		return nil
	})
	return rev, out, err
}

// Txn implements Store.
func (b *Bolt) Txn(_ context.Context, conds []Cond, ops []Op) error {
	for _, op := range ops {
		if op.Lease != 0 && !b.leaseAlive(op.Lease) {
			return ErrLeaseNotFound
		}
	}
	var rev int64
	var deleted []string // keys whose lease attachment the write ends
	err := b.db.Update(func(tx *bolt.Tx) error {
		kv := tx.Bucket(bucketKV)
		for _, c := range conds {
			raw := kv.Get([]byte(c.Key))
			var r int64
			if raw != nil {
				r = int64(binary.BigEndian.Uint64(raw[:8]))
			}
			if r != c.Rev {
				return ErrConflict
			}
		}
		var err error
		rev, deleted, err = b.apply(tx, ops)
		return err
	})
	if err != nil {
		return err
	}
	if orphans := b.committed(rev, ops, deleted); len(orphans) > 0 {
		// Their lease expired between the check above and the write: they go too.
		return b.Txn(context.Background(), nil, orphans)
	}
	return nil
}

// apply writes ops in tx with the next revision.
func (b *Bolt) apply(tx *bolt.Tx, ops []Op) (int64, []string, error) {
	kv, leased, meta := tx.Bucket(bucketKV), tx.Bucket(bucketLeased), tx.Bucket(bucketMeta)
	var rev uint64
	if raw := meta.Get(keyRev); raw != nil {
		rev = binary.BigEndian.Uint64(raw)
	}
	rev++
	var rb [8]byte
	binary.BigEndian.PutUint64(rb[:], rev)
	if err := meta.Put(keyRev, rb[:]); err != nil {
		return 0, nil, err
	}
	var unleased []string
	for _, op := range ops {
		k := []byte(op.Key)
		if leased.Get(k) != nil {
			unleased = append(unleased, op.Key)
			if err := leased.Delete(k); err != nil {
				return 0, nil, err
			}
		}
		if op.Delete {
			if err := kv.Delete(k); err != nil {
				return 0, nil, err
			}
			continue
		}
		if err := kv.Put(k, append(rb[:], op.Value...)); err != nil {
			return 0, nil, err
		}
		if op.Lease != 0 {
			var lb [8]byte
			binary.BigEndian.PutUint64(lb[:], uint64(op.Lease))
			if err := leased.Put(k, lb[:]); err != nil {
				return 0, nil, err
			}
		}
	}
	return int64(rev), unleased, nil
}

// committed records a write's changes for watchers and leases. It returns deletes for keys
// written with a lease that has meanwhile ended.
func (b *Bolt) committed(rev int64, ops []Op, unleased []string) (orphans []Op) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range unleased {
		for _, l := range b.leases {
			delete(l.keys, k)
		}
	}
	for _, op := range ops {
		if op.Lease != 0 && !op.Delete {
			if l := b.leases[op.Lease]; l != nil {
				l.keys[op.Key] = true
			} else {
				orphans = append(orphans, Op{Key: op.Key, Delete: true})
			}
		}
		ev := Event{Key: op.Key, Deleted: op.Delete, Rev: rev}
		b.history = append(b.history, ev)
		for w := range b.watchers {
			if strings.HasPrefix(op.Key, w.prefix) {
				select {
				case w.ch <- ev:
				default:
					// The buffer is full: the watcher has unread events and will look again.
				}
			}
		}
		for s := range b.streams {
			if strings.HasPrefix(op.Key, s.prefix) {
				s.pending = append(s.pending, ev)
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
		}
	}
	if n := len(b.history); n > historySize {
		drop := n - historySize
		b.oldest = b.history[drop].Rev
		b.history = append([]Event(nil), b.history[drop:]...)
	}
	return orphans
}

// Watch implements Store.
func (b *Bolt) Watch(ctx context.Context, prefix string) <-chan Event {
	w := &watcher{prefix: prefix, ch: make(chan Event, 64)}
	b.mu.Lock()
	b.watchers[w] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.watchers, w)
		close(w.ch) // under the lock, so a writer never sends on a closed channel
		b.mu.Unlock()
	})
	return w.ch
}

// WatchFrom implements Store from the history of recent changes kept in memory.
func (b *Bolt) WatchFrom(ctx context.Context, prefix string, rev int64) <-chan Event {
	out := make(chan Event)
	s := &stream{prefix: prefix, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	if rev+1 < b.oldest {
		b.mu.Unlock()
		b.wg.Go(func() {
			defer close(out)
			select {
			case out <- Event{Compacted: true, Rev: rev}:
			case <-ctx.Done():
			case <-b.stop:
			}
		})
		return out
	}
	for _, ev := range b.history {
		if ev.Rev > rev && strings.HasPrefix(ev.Key, prefix) {
			s.pending = append(s.pending, ev)
		}
	}
	b.streams[s] = struct{}{}
	b.mu.Unlock()
	b.wg.Go(func() {
		defer close(out)
		defer func() {
			b.mu.Lock()
			delete(b.streams, s)
			b.mu.Unlock()
		}()
		for {
			b.mu.Lock()
			batch := s.pending
			s.pending = nil
			b.mu.Unlock()
			for _, ev := range batch {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-b.stop:
				return
			case <-s.wake:
			}
		}
	})
	return out
}

// Grant implements Store.
func (b *Bolt) Grant(_ context.Context, ttl time.Duration) (LeaseID, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	b.leases[b.nextID] = &boltLease{ttl: ttl, deadline: time.Now().Add(ttl), keys: map[string]bool{}}
	return b.nextID, nil
}

// KeepAlive implements Store.
func (b *Bolt) KeepAlive(_ context.Context, id LeaseID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.leases[id]
	if l == nil || time.Now().After(l.deadline) {
		return ErrLeaseNotFound
	}
	l.deadline = time.Now().Add(l.ttl)
	return nil
}

func (b *Bolt) leaseAlive(id LeaseID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.leases[id]
	return l != nil && time.Now().Before(l.deadline)
}

// Revoke implements Store.
func (b *Bolt) Revoke(_ context.Context, id LeaseID) error {
	b.mu.Lock()
	l := b.leases[id]
	delete(b.leases, id)
	b.mu.Unlock()
	if l == nil {
		return ErrLeaseNotFound
	}
	return b.deleteLeased(l)
}

func (b *Bolt) deleteLeased(l *boltLease) error {
	b.mu.Lock()
	var ops []Op
	for k := range l.keys {
		ops = append(ops, Op{Key: k, Delete: true})
	}
	b.mu.Unlock()
	if len(ops) == 0 {
		return nil
	}
	return b.Txn(context.Background(), nil, ops)
}

// expireLeases deletes the keys of leases past their deadline.
func (b *Bolt) expireLeases() {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		var expired []*boltLease
		b.mu.Lock()
		for id, l := range b.leases {
			if time.Now().After(l.deadline) {
				expired = append(expired, l)
				delete(b.leases, id)
			}
		}
		b.mu.Unlock()
		for _, l := range expired {
			_ = b.deleteLeased(l)
		}
	}
}

// Close implements Store.
func (b *Bolt) Close() error {
	close(b.stop)
	b.wg.Wait()
	return b.db.Close()
}
