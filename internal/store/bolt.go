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
	bucketKV   = []byte("kv")
	bucketMeta = []byte("meta")
	keyRev     = []byte("rev")
)

// Bolt is a Store in one bbolt file. Values are stored as an 8-byte revision followed by the
// value bytes.
type Bolt struct {
	db *bolt.DB

	mu       sync.Mutex
	watchers map[*watcher]struct{}
}

type watcher struct {
	prefix string
	ch     chan Event
}

// OpenBolt opens (creating if needed) the store file at path. A second process opening the
// same file waits up to a second for the lock and then fails, so two `fog up` cannot share a
// data directory.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w (is another fog using this data directory?)", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKV, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return &Bolt{db: db, watchers: map[*watcher]struct{}{}}, nil
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
func (b *Bolt) List(_ context.Context, prefix string) ([]KV, error) {
	var out []KV
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKV).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			out = append(out, decode(k, v))
		}
		return nil
	})
	return out, err
}

// Txn implements Store.
func (b *Bolt) Txn(_ context.Context, conds []Cond, ops []Op) error {
	err := b.db.Update(func(tx *bolt.Tx) error {
		kv := tx.Bucket(bucketKV)
		for _, c := range conds {
			raw := kv.Get([]byte(c.Key))
			var rev int64
			if raw != nil {
				rev = int64(binary.BigEndian.Uint64(raw[:8]))
			}
			if rev != c.Rev {
				return ErrConflict
			}
		}
		meta := tx.Bucket(bucketMeta)
		var rev uint64
		if raw := meta.Get(keyRev); raw != nil {
			rev = binary.BigEndian.Uint64(raw)
		}
		rev++
		var rb [8]byte
		binary.BigEndian.PutUint64(rb[:], rev)
		if err := meta.Put(keyRev, rb[:]); err != nil {
			return err
		}
		for _, op := range ops {
			if op.Delete {
				if err := kv.Delete([]byte(op.Key)); err != nil {
					return err
				}
				continue
			}
			if err := kv.Put([]byte(op.Key), append(rb[:], op.Value...)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.notify(ops)
	return nil
}

func (b *Bolt) notify(ops []Op) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for w := range b.watchers {
		for _, op := range ops {
			if !strings.HasPrefix(op.Key, w.prefix) {
				continue
			}
			select {
			case w.ch <- Event{Key: op.Key, Deleted: op.Delete}:
			default:
				// The buffer is full: the watcher has unread events and will look again.
			}
		}
	}
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
		close(w.ch) // under the lock, so notify never sends on a closed channel
		b.mu.Unlock()
	})
	return w.ch
}

// Close implements Store.
func (b *Bolt) Close() error { return b.db.Close() }
