package store

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdConfig is how to reach an etcd cluster, with the options etcdctl takes.
type EtcdConfig struct {
	Endpoints []string
	// TLS, when set, is used for client connections (--cacert, --cert, --key).
	TLS *tls.Config
	// Username and Password authenticate (--user), when etcd has auth enabled.
	Username, Password string
	// Prefix is put before every key, so several deployments can share one etcd (default
	// "/fog/").
	Prefix      string
	DialTimeout time.Duration
}

// Etcd is a Store on an etcd cluster (v3.4 or newer). Revisions are etcd's: a key's Rev is
// its ModRevision, and a Cond with Rev 0 compares its CreateRevision with 0 (the key does not
// exist).
type Etcd struct {
	c      *clientv3.Client
	prefix string
}

// OpenEtcd connects to etcd and checks that it answers.
func OpenEtcd(ctx context.Context, cfg EtcdConfig) (*Etcd, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("store: no etcd endpoints")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/fog/"
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints: cfg.Endpoints, TLS: cfg.TLS, Username: cfg.Username, Password: cfg.Password,
		DialTimeout: cfg.DialTimeout, Context: ctx,
		// A member cut off by the network leaves its connection open and silent: keepalive
		// pings (gRPC's floor is 10 s) find it dead, so requests go to the members that
		// answer. Without them the client can keep using the silent one for many minutes.
		DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: 3 * time.Second,
		// The client's own retry warnings would go to stderr; Fog reports what fails itself.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("store: connect to etcd %v: %w", cfg.Endpoints, err)
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := c.Get(sctx, cfg.Prefix+"\x00probe"); err != nil {
		c.Close()
		return nil, fmt.Errorf("store: etcd %v does not answer: %w", cfg.Endpoints, err)
	}
	return &Etcd{c: c, prefix: cfg.Prefix}, nil
}

// callTimeout bounds one request when the caller set no deadline: without a quorum etcd
// does not answer, and nothing in Fog may hang on that.
const callTimeout = 5 * time.Second

func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, callTimeout)
}

// unavailable marks errors that mean etcd did not answer. ctx is the request's (bounded)
// context.
func unavailable(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) || errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) ||
		// A leader election in progress: the same request succeeds once it is over.
		errors.Is(err, rpctypes.ErrLeaderChanged) ||
		// An external etcd's answer comes as a gRPC status when the client gives up.
		status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.Unavailable ||
		// etcd 3.4 returns its own expired deadline, the one this request's deadline set
		// through gRPC's grpc-timeout, as code Unknown with nothing typed in it: the
		// request's context has expired too, and says so as a type; or it has not quite, the
		// server's copy of the deadline having run out a moment before this side's.
		errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		status.Code(err) == codes.Unknown && deadlineNear(ctx) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

// deadlineNear reports whether ctx's deadline is less than a second away: an untyped failure
// then is the server giving up at the same deadline.
func deadlineNear(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && time.Until(d) < time.Second
}

// Client is the underlying etcd client (elections, compaction in tests).
func (e *Etcd) Client() *clientv3.Client { return e.c }

func (e *Etcd) kv(k []byte, v []byte, rev int64) KV {
	return KV{Key: string(k[len(e.prefix):]), Value: v, Rev: rev}
}

// Get implements Store.
func (e *Etcd) Get(ctx context.Context, key string) (KV, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	r, err := e.c.Get(ctx, e.prefix+key)
	if err != nil {
		return KV{}, fmt.Errorf("store: get %s: %w", key, unavailable(ctx, err))
	}
	if len(r.Kvs) == 0 {
		return KV{}, ErrNotFound
	}
	return e.kv(r.Kvs[0].Key, r.Kvs[0].Value, r.Kvs[0].ModRevision), nil
}

// List implements Store.
func (e *Etcd) List(ctx context.Context, prefix string) ([]KV, error) {
	_, kvs, err := e.Snapshot(ctx, prefix)
	return kvs, err
}

// Snapshot implements Store: every range of one etcd transaction is read at its revision.
func (e *Etcd) Snapshot(ctx context.Context, prefixes ...string) (int64, []KV, error) {
	ops := make([]clientv3.Op, 0, len(prefixes))
	for _, p := range prefixes {
		ops = append(ops, clientv3.OpGet(e.prefix+p, clientv3.WithPrefix()))
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	r, err := e.c.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return 0, nil, fmt.Errorf("store: read %v: %w", prefixes, unavailable(ctx, err))
	}
	var out []KV
	for _, rr := range r.Responses {
		for _, kv := range rr.GetResponseRange().Kvs {
			out = append(out, e.kv(kv.Key, kv.Value, kv.ModRevision))
		}
	}
	return r.Header.Revision, out, nil
}

// Txn implements Store.
func (e *Etcd) Txn(ctx context.Context, conds []Cond, ops []Op) error {
	cmps := make([]clientv3.Cmp, 0, len(conds))
	for _, c := range conds {
		if c.Rev == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(e.prefix+c.Key), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(e.prefix+c.Key), "=", c.Rev))
		}
	}
	then := make([]clientv3.Op, 0, len(ops))
	for _, op := range ops {
		switch {
		case op.Delete:
			then = append(then, clientv3.OpDelete(e.prefix+op.Key))
		case op.Lease != 0:
			then = append(then, clientv3.OpPut(e.prefix+op.Key, string(op.Value), clientv3.WithLease(clientv3.LeaseID(op.Lease))))
		default:
			then = append(then, clientv3.OpPut(e.prefix+op.Key, string(op.Value)))
		}
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	r, err := e.c.Txn(ctx).If(cmps...).Then(then...).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return ErrLeaseNotFound
	}
	if err != nil {
		return fmt.Errorf("store: txn: %w", unavailable(ctx, err))
	}
	if !r.Succeeded {
		return ErrConflict
	}
	return nil
}

// Watch implements Store. A watch that etcd ends (no leader, a lost connection) is set up
// again until ctx ends, with an event each time so the watcher looks again: it may have
// missed changes meanwhile.
func (e *Etcd) Watch(ctx context.Context, prefix string) <-chan Event {
	out := make(chan Event, 64)
	notify := func(ev Event) {
		select {
		case out <- ev:
		default:
		}
	}
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			wctx, cancel := context.WithCancel(ctx)
			for resp := range e.c.Watch(clientv3.WithRequireLeader(wctx), e.prefix+prefix, clientv3.WithPrefix()) {
				if resp.Err() != nil {
					notify(Event{})
					continue
				}
				for _, ev := range resp.Events {
					notify(Event{Key: string(ev.Kv.Key[len(e.prefix):]), Deleted: ev.Type == clientv3.EventTypeDelete, Rev: ev.Kv.ModRevision})
				}
			}
			cancel()
			notify(Event{})
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return out
}

// WatchFrom implements Store.
func (e *Etcd) WatchFrom(ctx context.Context, prefix string, rev int64) <-chan Event {
	out := make(chan Event)
	wctx, cancel := context.WithCancel(ctx)
	wch := e.c.Watch(clientv3.WithRequireLeader(wctx), e.prefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	go func() {
		defer close(out)
		defer cancel()
		for resp := range wch {
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				select {
				case out <- Event{Compacted: true, Rev: resp.CompactRevision}:
				case <-ctx.Done():
				}
				return
			}
			if resp.Err() != nil {
				continue
			}
			for _, ev := range resp.Events {
				select {
				case out <- Event{Key: string(ev.Kv.Key[len(e.prefix):]), Deleted: ev.Type == clientv3.EventTypeDelete, Rev: ev.Kv.ModRevision}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// Grant implements Store. etcd counts TTLs in whole seconds and enforces a minimum.
func (e *Etcd) Grant(ctx context.Context, ttl time.Duration) (LeaseID, error) {
	secs := int64((ttl + time.Second - 1) / time.Second)
	ctx, cancel := bounded(ctx)
	defer cancel()
	r, err := e.c.Grant(ctx, secs)
	if err != nil {
		return 0, fmt.Errorf("store: grant lease: %w", unavailable(ctx, err))
	}
	return LeaseID(r.ID), nil
}

// KeepAlive implements Store.
func (e *Etcd) KeepAlive(ctx context.Context, id LeaseID) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	_, err := e.c.KeepAliveOnce(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return ErrLeaseNotFound
	}
	return unavailable(ctx, err)
}

// Revoke implements Store.
func (e *Etcd) Revoke(ctx context.Context, id LeaseID) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	_, err := e.c.Revoke(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return ErrLeaseNotFound
	}
	return err
}

// Close implements Store.
func (e *Etcd) Close() error { return e.c.Close() }
