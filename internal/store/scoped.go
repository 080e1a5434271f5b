package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrForbidden means a scoped store refused a read or write outside its scope.
var ErrForbidden = errors.New("store: outside this agent's scope")

// Scope lists what a scoped store may read and write: a key is allowed when it starts with
// one of the prefixes (a prefix ending without "/" also names the one key).
type Scope struct {
	Read  []string
	Write []string
	// Public are keys outside Read that may still be read one at a time (Get) and watched, but
	// only as a projection: each value cut down to a few top-level JSON fields that hold no
	// secret. Listing them and comparing on them stay refused, so no whole record leaves.
	Public []Projection
}

// Projection is a prefix of keys whose values may be read only as the listed top-level JSON
// fields of the stored object.
type Projection struct {
	Prefix string
	Fields []string
}

// AgentScope is what the agent of a region may touch: it reads its own region's desired
// state and commands, the groups, every region's observed state and lease (its gateway routes
// by them), the agent records and the deployment's public settings; it writes only its
// region's observed state, lease, agent record and command results. Tokens, operations, the
// CA, the agent certificates' records and the instances' resource records are out of reach.
//
// Another region's desired state holds that region's admins' SCRAM verifiers
// (instance.Spec.AdminVerifier), which an offline dictionary attack turns into passwords, so
// it is not readable as such. What the agent needs of it is where a partner instance listens
// (group.Routes: the gateway's read-only listener and the partner region's read-write
// listener route there), which DNS publishes anyway: a Get of another region's desired key
// answers only the fields of instance.Spec named in the projection below.
func AgentScope(region string) Scope {
	return Scope{
		Read: []string{"desired/" + region + "/", "commands/" + region + "/", "observed/", "leases/", "fog/", "agents/", "cluster/"},
		Write: []string{"observed/" + region + "/", "leases/" + region, "agents/" + region,
			"commands/" + region + "/"},
		// The JSON fields of instance.Spec that say where the instance listens, nothing of
		// its configuration or its admin's credentials. (The store cannot import instance,
		// which sits above it.)
		Public: []Projection{{Prefix: "desired/", Fields: []string{"uid", "region", "host", "port"}}},
	}
}

func (s Scope) allows(list []string, key string) bool {
	for _, p := range list {
		if key == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(key, p)) {
			return true
		}
	}
	return false
}

// Check returns ErrForbidden unless every key read and written is in scope.
func (s Scope) Check(read []string, write []string) error {
	for _, k := range read {
		if !s.allows(s.Read, k) && !s.allows(s.Write, k) {
			return fmt.Errorf("%w: read %q", ErrForbidden, k)
		}
	}
	for _, k := range write {
		if !s.allows(s.Write, k) {
			return fmt.Errorf("%w: write %q", ErrForbidden, k)
		}
	}
	return nil
}

// projection returns the projection a Get of key outside Read answers with, if any. Only
// keys strictly under a public prefix qualify: the prefix itself is no record.
func (s Scope) projection(key string) (Projection, bool) {
	for _, p := range s.Public {
		if strings.HasSuffix(p.Prefix, "/") && strings.HasPrefix(key, p.Prefix) && len(key) > len(p.Prefix) {
			return p, true
		}
	}
	return Projection{}, false
}

// CheckWatch returns ErrForbidden unless a watch of prefix stays in scope. A watch delivers
// keys and revisions, never values, so public prefixes (and prefixes under them) may be
// watched too: the gateway watches "desired/" to see a partner instance move.
func (s Scope) CheckWatch(prefix string) error {
	if s.Check([]string{prefix}, nil) == nil {
		return nil
	}
	for _, p := range s.Public {
		if strings.HasSuffix(p.Prefix, "/") && strings.HasPrefix(prefix, p.Prefix) {
			return nil
		}
	}
	return fmt.Errorf("%w: watch %q", ErrForbidden, prefix)
}

// project cuts a stored JSON object down to fields. A value that is not a JSON object
// cannot be cut down, and is refused rather than passed whole.
func (p Projection) project(kv KV) (KV, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(kv.Value, &all); err != nil {
		return KV{}, fmt.Errorf("%w: read %q (not a record that can be read in part)", ErrForbidden, kv.Key)
	}
	out := make(map[string]json.RawMessage, len(p.Fields))
	for _, f := range p.Fields {
		if v, ok := all[f]; ok {
			out[f] = v
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return KV{}, fmt.Errorf("project %s: %w", kv.Key, err)
	}
	return KV{Key: kv.Key, Value: b, Rev: kv.Rev}, nil
}

// CheckTxn checks a transaction: compares are reads, ops are writes; leases are not given to
// scoped stores.
func (s Scope) CheckTxn(conds []Cond, ops []Op) error {
	read := make([]string, 0, len(conds))
	for _, c := range conds {
		read = append(read, c.Key)
	}
	write := make([]string, 0, len(ops))
	for _, o := range ops {
		if o.Lease != 0 {
			return fmt.Errorf("%w: leased put of %q", ErrForbidden, o.Key)
		}
		write = append(write, o.Key)
	}
	return s.Check(read, write)
}

// Scoped returns a view of st that refuses, with ErrForbidden, every read and write outside
// scope. An agent sees the store only through one, in the same process (`fog up`) or
// through the server's agent endpoint.
func Scoped(st Store, scope Scope) Store { return &scoped{st: st, scope: scope} }

type scoped struct {
	st    Store
	scope Scope
}

func (s *scoped) Get(ctx context.Context, key string) (KV, error) {
	err := s.scope.Check([]string{key}, nil)
	if err == nil {
		return s.st.Get(ctx, key)
	}
	p, ok := s.scope.projection(key)
	if !ok {
		return KV{}, err
	}
	kv, err := s.st.Get(ctx, key)
	if err != nil {
		return KV{}, err
	}
	return p.project(kv)
}

func (s *scoped) List(ctx context.Context, prefix string) ([]KV, error) {
	if err := s.scope.Check([]string{prefix}, nil); err != nil {
		return nil, err
	}
	return s.st.List(ctx, prefix)
}

func (s *scoped) Txn(ctx context.Context, conds []Cond, ops []Op) error {
	if err := s.scope.CheckTxn(conds, ops); err != nil {
		return err
	}
	return s.st.Txn(ctx, conds, ops)
}

func closedChan() <-chan Event {
	ch := make(chan Event)
	close(ch)
	return ch
}

func (s *scoped) Watch(ctx context.Context, prefix string) <-chan Event {
	if s.scope.CheckWatch(prefix) != nil {
		return closedChan()
	}
	return s.st.Watch(ctx, prefix)
}

func (s *scoped) Snapshot(ctx context.Context, prefixes ...string) (int64, []KV, error) {
	if err := s.scope.Check(prefixes, nil); err != nil {
		return 0, nil, err
	}
	return s.st.Snapshot(ctx, prefixes...)
}

func (s *scoped) WatchFrom(ctx context.Context, prefix string, rev int64) <-chan Event {
	if s.scope.CheckWatch(prefix) != nil {
		return closedChan()
	}
	return s.st.WatchFrom(ctx, prefix, rev)
}

func (s *scoped) Grant(context.Context, time.Duration) (LeaseID, error) {
	return 0, fmt.Errorf("%w: leases", ErrForbidden)
}
func (s *scoped) KeepAlive(context.Context, LeaseID) error {
	return fmt.Errorf("%w: leases", ErrForbidden)
}
func (s *scoped) Revoke(context.Context, LeaseID) error {
	return fmt.Errorf("%w: leases", ErrForbidden)
}

// Close does not close the underlying store, which the scoped view does not own.
func (s *scoped) Close() error { return nil }
