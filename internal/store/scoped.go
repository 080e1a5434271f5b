package store

import (
	"context"
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
}

// AgentScope is what the agent of a region may touch: it reads its region's desired state
// and commands, the groups, every region's observed state and lease (its gateway routes by
// them) and the deployment's public settings; it writes only its region's observed state,
// lease, agent record and command results. Tokens, operations, the CA and the instances'
// resource records are out of reach.
func AgentScope(region string) Scope {
	return Scope{
		Read: []string{"desired/", "commands/" + region + "/", "observed/", "leases/", "fog/", "agents/", "cluster/"},
		Write: []string{"observed/" + region + "/", "leases/" + region, "agents/" + region,
			"commands/" + region + "/"},
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
	if err := s.scope.Check([]string{key}, nil); err != nil {
		return KV{}, err
	}
	return s.st.Get(ctx, key)
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
	if s.scope.Check([]string{prefix}, nil) != nil {
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
	if s.scope.Check([]string{prefix}, nil) != nil {
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
