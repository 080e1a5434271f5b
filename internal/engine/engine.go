package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// The failover group record lives in package group, which the gateway reads too.
type (
	FailoverGroup = group.FailoverGroup
	Member        = group.Member
	GroupSide     = group.GroupSide
)

// Config is what the engine needs of the deployment's settings.
type Config struct {
	// DNSSuffix is the suffix of instance and listener names, part of every desired state.
	DNSSuffix string
	// OperationTimeout is what a timed-out operation says it was bounded by.
	OperationTimeout time.Duration
}

// Engine runs operations through one store: the API's for what it writes when it accepts a
// request, the leader's (package election), whose every write carries the leadership's token,
// for driving them.
type Engine struct {
	cfg    Config
	st     store.Store
	leases *lease.Observer
	log    *slog.Logger
}

// New returns an engine that reads and writes through st and judges agents' leases with
// leases (shared by every engine of the process, so that a renewal seen once counts).
func New(cfg Config, st store.Store, leases *lease.Observer, log *slog.Logger) *Engine {
	return &Engine{cfg: cfg, st: st, leases: leases, log: log}
}

// Store is the store the engine writes through.
func (e *Engine) Store() store.Store { return e.st }

// StoreUnavailable is the answer to a request the store could not serve in time.
func StoreUnavailable() error {
	return fault.New(fault.Unavailable, "ServiceUnavailable",
		"Fog's store (etcd) is not answering, so the request could not be served. Nothing was changed; retry when the store is back.")
}

// Internal is the error a client is told for a failure of Fog's own (the store's, mostly): a
// store that does not answer is StoreUnavailable; anything else a fault.Failure, whose
// message names an error id and not err's text, which the edge that tells the client logs
// under that id (arm.Report). errors.Is and errors.As see err.
func Internal(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return StoreUnavailable()
	}
	return fault.Failure("InternalServerError", "Fog could not complete the request", err)
}

func cannotFailover(format string, args ...any) error {
	return fault.Invalid("ManagedInstanceGeoFailoverCannotBeExecuted", "Managed Instance geo-failover cannot be executed at this time. Reason: '%s'.", fmt.Sprintf(format, args...))
}

// errStopping is returned by a runner interrupted by fog stopping; the operation stays
// InProgress and resumes from its recorded step on the next start.
var errStopping = fault.New(fault.Unavailable, "ServiceStopping", "Fog is stopping; the operation resumes when it starts again.")

// stopping reports whether ctx ended because fog is stopping (not because the operation's
// own deadline passed).
func stopping(ctx context.Context) bool {
	return ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled)
}

// ErrTimeout means an operation did not see the state it waited for in time.
var ErrTimeout = errors.New("controller: operation timed out")

// WaitErr is what a client is told of a failed wait of op.
func (e *Engine) WaitErr(op *Operation, err error) error {
	if errors.Is(err, ErrTimeout) {
		return fault.New(fault.Internal, "OperationTimedOut",
			"The operation %s did not finish within %s. The region's agent may be down; the desired state is kept and applied when it returns.", op.Name, e.cfg.OperationTimeout)
	}
	return Internal(err)
}

// WaitFor calls check whenever a key under one of the prefixes changes (and every 100 ms)
// until it reports done, fails, or ctx ends.
func (e *Engine) WaitFor(ctx context.Context, prefix string, check func() (bool, error), more ...string) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, p := range append([]string{prefix}, more...) {
		ch := e.st.Watch(wctx, p)
		wg.Go(func() {
			for range ch {
				select {
				case events <- struct{}{}:
				default:
				}
			}
		})
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return ErrTimeout
			}
			return ctx.Err()
		case <-events:
		case <-tick.C:
		}
	}
}

// waitSide waits until side's observed state satisfies ok.
func (e *Engine) waitSide(ctx context.Context, s GroupSide, timeout time.Duration, ok func(st instance.Status) bool) (instance.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	key := instance.StatusKey(s.Location, s.InstanceUID)
	var st instance.Status
	err := e.WaitFor(ctx, key, func() (bool, error) {
		st = instance.Status{}
		if _, err := store.Get(ctx, e.st, key, &st); err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
		return ok(st), nil
	})
	return st, err
}

// RunCommand hands a one-shot command to the agent of region, waits up to timeout until the
// agent marks it done, and removes it. The returned command carries the agent's error, if
// any; err reports a failure to get an answer at all.
func (e *Engine) RunCommand(ctx context.Context, region string, cmd instance.Command, timeout time.Duration) (instance.Command, error) {
	cmd.ID, cmd.Created = resource.NewUID(), time.Now().UTC()
	key := instance.CommandKey(region, cmd.ID)
	if err := store.Put(ctx, e.st, key, cmd); err != nil {
		return cmd, err
	}
	defer func() { _ = e.st.Txn(context.WithoutCancel(ctx), nil, []store.Op{{Key: key, Delete: true}}) }()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var got instance.Command
	err := e.WaitFor(wctx, key, func() (bool, error) {
		_, err := store.Get(wctx, e.st, key, &got)
		return got.Done, err
	})
	return got, err
}

// command sends a one-shot command to a side's agent and waits for it.
func (e *Engine) command(ctx context.Context, s GroupSide, kind string, timeout time.Duration) error {
	got, err := e.RunCommand(ctx, s.Location, instance.Command{InstanceUID: s.InstanceUID, Kind: kind}, timeout)
	if err != nil {
		return err
	}
	if got.Error != "" {
		return errors.New(got.Error)
	}
	return nil
}

// Statuses returns both sides' observed state.
func (e *Engine) Statuses(ctx context.Context, g *FailoverGroup) [2]instance.Status {
	var out [2]instance.Status
	for i, s := range g.Sides {
		_, _ = store.Get(ctx, e.st, instance.StatusKey(s.Location, s.InstanceUID), &out[i])
	}
	return out
}

// Streaming reports whether a standby streams from its primary.
func Streaming(st instance.Status) bool {
	return st.Phase == instance.PhaseReady && st.Role == instance.RoleStandby && st.Replication != nil && st.Replication.ReceiverStatus == "streaming"
}

func hasSlot(st instance.Status, slot string) bool {
	if st.Replication == nil {
		return false
	}
	for _, s := range st.Replication.Slots {
		if s.Name == slot {
			return true
		}
	}
	return false
}

// setPercent records an operation's progress.
func (e *Engine) setPercent(ctx context.Context, id string, p float64) {
	_, _ = store.Update(ctx, e.st, OpKey(id), func(o *Operation) error { o.Percent = &p; return nil })
}

// NewSeedGeneration returns a seed generation above prev that no earlier group used either:
// an instance remembers the generation it was last seeded with, and one that was the
// secondary of an earlier group must be seeded again, not trusted.
func NewSeedGeneration(prev int64) int64 {
	return max(prev+1, time.Now().UnixNano())
}

// StepGroup applies fn to the stored group and writes it with both members' specs, retrying
// when someone else wrote in between.
func (e *Engine) StepGroup(ctx context.Context, name string, fn func(g *FailoverGroup)) (*FailoverGroup, [2]int64, error) {
	for {
		var g FailoverGroup
		rev, err := store.Get(ctx, e.st, group.Key(name), &g)
		if err != nil {
			return nil, [2]int64{}, err
		}
		fn(&g)
		gens, aerr := e.WriteGroup(ctx, &g, rev)
		if aerr == nil {
			return &g, gens, nil
		}
		if !errors.Is(aerr, fault.ErrBusy) || ctx.Err() != nil {
			return nil, gens, aerr
		}
	}
}

// advance applies fn to the group and to a copy of the operation record, and writes both, with
// the members' desired state, in one transaction: a step's effect and the record of having
// reached it are never apart. It retries when someone else wrote the group in between.
func (e *Engine) advance(ctx context.Context, op *Operation, fn func(g *FailoverGroup, next *Operation)) (*FailoverGroup, error) {
	for {
		var g FailoverGroup
		rev, err := store.Get(ctx, e.st, group.Key(op.ResourceID), &g)
		if err != nil {
			return nil, err
		}
		next := *op
		next.Timeline = append([]arm.StepTime(nil), op.Timeline...)
		fn(&g, &next)
		next.Mark(next.Step)
		_, aerr := e.WriteGroup(ctx, &g, rev, store.PutOp(OpKey(op.ID), next))
		if aerr == nil {
			*op = next
			return &g, nil
		}
		if !errors.Is(aerr, fault.ErrBusy) || ctx.Err() != nil {
			return nil, aerr
		}
	}
}
