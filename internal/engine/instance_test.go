package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/agent/agenttest"
	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// region is one region's real agent (package agent) reconciling in-memory PostgreSQL servers
// (package agenttest), and an engine over the same store.
type region struct {
	t   *testing.T
	st  store.Store
	net *agenttest.Net
	e   *Engine
	dir string

	mu   sync.Mutex
	stop func() // stops the agent; nil while it is down
}

const testRegion = "eastus"

func newRegion(t *testing.T) *region {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := &region{t: t, st: st, net: agenttest.NewNet(filepath.Join(dir, "instances")), dir: dir,
		e: New(Config{DNSSuffix: "fog.test", OperationTimeout: 10 * time.Second}, st, lease.NewObserver(time.Second, nil), log)}
	r.setUp(true)
	t.Cleanup(func() {
		r.setUp(false)
		st.Close()
	})
	return r
}

// issuer signs nothing: the servers are in memory.
type issuer struct{}

func (issuer) Issue([]string, []net.IP) ([]byte, []byte, error) {
	return []byte("crt"), []byte("key"), nil
}
func (issuer) IssueReplication(string) ([]byte, []byte, error) {
	return []byte("replication crt"), []byte("replication key"), nil
}

// setUp starts the region's agent, or stops it.
func (r *region) setUp(up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !up {
		if r.stop != nil {
			r.stop()
			r.stop = nil
		}
		return
	}
	if r.stop != nil {
		return
	}
	a, err := agent.New(agent.Config{
		Region: testRegion, Dir: filepath.Join(r.dir, testRegion), Resync: 50 * time.Millisecond, Observe: 100 * time.Millisecond,
		Lease:   lease.Timing{TTL: time.Second, Renew: 50 * time.Millisecond, StoreTimeout: 100 * time.Millisecond, FenceAfter: 250 * time.Millisecond},
		Servers: r.net.Server,
	}, r.st, nil, issuer{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	r.stop = func() { cancel(); <-done }
}

func (r *region) instanceKey(name string) string { return group.InstanceKey("sub", "rg", name) }

// acceptCreate writes what the API writes when it accepts the create of instance name: the
// instance (Creating), its name, its desired state and the operation, in one transaction.
func (r *region) acceptCreate(name, host string) *Operation {
	r.t.Helper()
	ctx := context.Background()
	m := resource.ManagedInstance{UID: resource.NewUID(), Subscription: "sub", ResourceGroup: "rg", Name: name, Location: testRegion,
		Host: host, Port: 5432, DNSZone: "zone", AdministratorLogin: "admin", ProvisioningState: resource.ProvisioningCreating, Generation: 1}
	op := r.newOp(KindPutInstance, "UpsertManagedServer", &m)
	op.Create = true
	m.ActiveOperation = op.ID
	sconds, sops, gens, err := r.e.SpecWrites(ctx, r.e.BaseSpec(&m))
	if err != nil {
		r.t.Fatal(err)
	}
	op.Generation = gens[0]
	conds := append(sconds, store.Cond{Key: r.instanceKey(name)}, store.Cond{Key: NameKey(name)})
	ops := append(sops, store.PutOp(NameKey(name), map[string]string{"id": m.ID()}),
		store.PutOp(r.instanceKey(name), m), store.PutOp(OpKey(op.ID), op))
	if err := r.st.Txn(ctx, conds, ops); err != nil {
		r.t.Fatalf("accept the create of %s: %v", name, err)
	}
	return op
}

// acceptDelete writes what the API writes when it accepts the delete of instance name.
func (r *region) acceptDelete(name string) *Operation {
	r.t.Helper()
	ctx := context.Background()
	var m resource.ManagedInstance
	rev, err := store.Get(ctx, r.st, r.instanceKey(name), &m)
	if err != nil {
		r.t.Fatal(err)
	}
	op := r.newOp(KindDeleteInstance, "DropManagedServer", &m)
	m.ProvisioningState, m.ActiveOperation = resource.ProvisioningDeleting, op.ID
	spec := r.e.BaseSpec(&m)
	spec.Deleted = true
	sconds, sops, _, err := r.e.SpecWrites(ctx, spec)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.st.Txn(ctx, append(sconds, store.Cond{Key: r.instanceKey(name), Rev: rev}),
		append(sops, store.PutOp(r.instanceKey(name), m), store.PutOp(OpKey(op.ID), op))); err != nil {
		r.t.Fatalf("accept the delete of %s: %v", name, err)
	}
	return op
}

func (r *region) newOp(kind, name string, m *resource.ManagedInstance) *Operation {
	return &Operation{ID: resource.NewUID(), Name: name, Kind: kind, Subscription: "sub", Location: testRegion,
		ResourceID: m.ID(), InstanceKey: r.instanceKey(m.Name), InstanceUID: m.UID, Region: testRegion,
		Status: arm.StatusInProgress, StartTime: time.Now().UTC()}
}

// run runs op as the controller's driver does, bounded.
func (r *region) run(op *Operation) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return r.e.Run(ctx, op)
}

// stored reads op's record back.
func (r *region) stored(op *Operation) Operation {
	r.t.Helper()
	var got Operation
	if _, err := store.Get(context.Background(), r.st, OpKey(op.ID), &got); err != nil {
		r.t.Fatal(err)
	}
	return got
}

// gone fails the test unless every record of the instance op created is gone.
func (r *region) gone(op *Operation, name string) {
	r.t.Helper()
	ctx := context.Background()
	for _, key := range []string{r.instanceKey(name), NameKey(name), instance.SpecKey(testRegion, op.InstanceUID), instance.StatusKey(testRegion, op.InstanceUID)} {
		var v map[string]any
		if _, err := store.Get(ctx, r.st, key, &v); !errors.Is(err, store.ErrNotFound) {
			r.t.Errorf("%s: %v, want it removed", key, err)
		}
	}
	if pg := r.net.PG(op.InstanceUID); pg != nil {
		pg.Do(func(p *agenttest.PG) {
			if p.Data || p.Running {
				r.t.Errorf("instance %s: data directory %v, running %v; want neither", name, p.Data, p.Running)
			}
		})
	}
}

// instanceState is the instance's provisioning state and operation mark.
func (r *region) instanceState(name string) (string, string) {
	r.t.Helper()
	var m resource.ManagedInstance
	if _, err := store.Get(context.Background(), r.st, r.instanceKey(name), &m); err != nil {
		r.t.Fatal(err)
	}
	return m.ProvisioningState, m.ActiveOperation
}

// wantProvisioningFailed fails the test unless err is what a client is told of a create whose
// instance the agent could not make.
func wantProvisioningFailed(t *testing.T, err error) {
	t.Helper()
	rec := arm.FromError(err)
	const prefix = "Creating the managed instance failed and nothing was left behind: "
	if err == nil || rec.Status != http.StatusBadRequest || rec.Code != "ProvisioningFailed" || !strings.HasPrefix(rec.Message, prefix) ||
		!strings.Contains(rec.Message, agenttest.ErrInjected.Error()) {
		t.Fatalf("create = %v (status %d), want 400 ProvisioningFailed %q with the agent's error", err, rec.Status, prefix+"...")
	}
}

// TestInstanceCreateAndDelete: a create succeeds once the agent reports the instance Ready,
// and a delete removes the instance and every record of it.
func TestInstanceCreateAndDelete(t *testing.T) {
	r := newRegion(t)
	op := r.acceptCreate("mi-a", "127.0.0.1")
	if err := r.run(op); err != nil {
		t.Fatalf("create: %v", err)
	}
	if state, active := r.instanceState("mi-a"); state != resource.ProvisioningSucceeded || active != "" {
		t.Errorf("after the create the instance is %s with operation %q, want Succeeded and none", state, active)
	}
	del := r.acceptDelete("mi-a")
	if err := r.run(del); err != nil {
		t.Fatalf("delete: %v", err)
	}
	r.gone(op, "mi-a")
}

// TestInstanceCreateFails: a create the agent reports Failed is removed entirely, records and
// name, and fails ProvisioningFailed with the agent's error; the name can be used again.
func TestInstanceCreateFails(t *testing.T) {
	r := newRegion(t)
	r.net.FailNext("Init")
	op := r.acceptCreate("mi-a", "127.0.0.1")
	wantProvisioningFailed(t, r.run(op))
	r.gone(op, "mi-a")
	if rec := r.stored(op); rec.Step != StepRolledBack || rec.Reason == nil || rec.Reason.Code != "ProvisioningFailed" {
		t.Errorf("the operation's record is at step %q with reason %v, want %q with ProvisioningFailed", rec.Step, rec.Reason, StepRolledBack)
	}
	again := r.acceptCreate("mi-a", "127.0.0.1")
	if err := r.run(again); err != nil {
		t.Fatalf("create again with the same name: %v", err)
	}
}

// TestInstanceCreateFailsResumes: a runner stopped once the failed create is recorded rolled
// back, while the agent is away, leaves the records; a runner started again from the stored
// record removes them when the agent returns, and reports the failure as the first would have.
func TestInstanceCreateFailsResumes(t *testing.T) {
	r := newRegion(t)
	r.net.FailNext("Init")
	op := r.acceptCreate("mi-a", "127.0.0.1")
	ctx := context.Background()
	// The agent reports the create Failed, and is gone before the instance is marked deleted.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st instance.Status
		if _, err := store.Get(ctx, r.st, instance.StatusKey(testRegion, op.InstanceUID), &st); err == nil && st.Phase == instance.PhaseFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent does not report the create Failed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.setUp(false)

	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	running := *op
	go func() { done <- r.e.Run(rctx, &running) }()
	for r.stored(op).Step != StepRolledBack {
		if time.Now().After(deadline) {
			t.Fatal("the rollback is not recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop() // fog stops
	if err := <-done; err == nil {
		t.Fatal("a runner stopped before the instance was deleted reports success")
	}
	var spec instance.Spec
	if _, err := store.Get(ctx, r.st, instance.SpecKey(testRegion, op.InstanceUID), &spec); err != nil || !spec.Deleted {
		t.Fatalf("desired state after the rollback: deleted %v (%v), want deleted", spec.Deleted, err)
	}
	if state, _ := r.instanceState("mi-a"); state != resource.ProvisioningCreating {
		t.Fatalf("the instance is %s before the agent deleted it, want Creating", state)
	}

	r.setUp(true)
	resumed := r.stored(op)
	wantProvisioningFailed(t, r.run(&resumed))
	r.gone(op, "mi-a")
}

// TestInstanceUpdate: an update the agent applies succeeds and leaves the instance
// Succeeded.
func TestInstanceUpdate(t *testing.T) {
	r := newRegion(t)
	op := r.acceptCreate("mi-a", "127.0.0.1")
	if err := r.run(op); err != nil {
		t.Fatalf("create: %v", err)
	}
	ctx := context.Background()
	var m resource.ManagedInstance
	rev, err := store.Get(ctx, r.st, r.instanceKey("mi-a"), &m)
	if err != nil {
		t.Fatal(err)
	}
	up := r.newOp(KindPutInstance, "UpsertManagedServer", &m)
	m.ProvisioningState, m.ActiveOperation, m.VCores = resource.ProvisioningUpdating, up.ID, 8
	m.Generation++
	sconds, sops, gens, err := r.e.SpecWrites(ctx, r.e.BaseSpec(&m))
	if err != nil {
		t.Fatal(err)
	}
	up.Generation = gens[0]
	if err := r.st.Txn(ctx, append(sconds, store.Cond{Key: r.instanceKey("mi-a"), Rev: rev}),
		append(sops, store.PutOp(r.instanceKey("mi-a"), m), store.PutOp(OpKey(up.ID), up))); err != nil {
		t.Fatal(err)
	}
	if err := r.run(up); err != nil {
		t.Fatalf("update: %v", err)
	}
	if state, active := r.instanceState("mi-a"); state != resource.ProvisioningSucceeded || active != "" {
		t.Errorf("after the update the instance is %s with operation %q, want Succeeded and none", state, active)
	}
}

// TestDatabaseOperations: a database is created and dropped by the agent's command, and a
// command the agent fails fails the operation with its error.
func TestDatabaseOperations(t *testing.T) {
	r := newRegion(t)
	op := r.acceptCreate("mi-a", "127.0.0.1")
	if err := r.run(op); err != nil {
		t.Fatalf("create: %v", err)
	}
	ctx := context.Background()
	var m resource.ManagedInstance
	if _, err := store.Get(ctx, r.st, r.instanceKey("mi-a"), &m); err != nil {
		t.Fatal(err)
	}
	dbOp := func(kind, name, cmdKind, db string) *Operation {
		op := r.newOp(kind, name, &m)
		op.Database = db
		cmd := instance.Command{ID: resource.NewUID(), InstanceUID: m.UID, Kind: cmdKind, Database: db, Owner: m.AdministratorLogin, Created: time.Now().UTC()}
		op.CommandID = cmd.ID
		if err := r.st.Txn(ctx, nil, []store.Op{store.PutOp(instance.CommandKey(testRegion, cmd.ID), cmd), store.PutOp(OpKey(op.ID), op)}); err != nil {
			t.Fatal(err)
		}
		return op
	}
	databases := func() (dbs []string) {
		r.net.PG(m.UID).Do(func(p *agenttest.PG) { dbs = slices.Clone(p.Databases) })
		return dbs
	}
	if err := r.run(dbOp(KindPutDatabase, "CreateManagedDatabase", instance.CmdCreateDatabase, "app")); err != nil {
		t.Fatalf("create database: %v", err)
	}
	if !slices.Contains(databases(), "app") {
		t.Fatalf("databases %v after the create, want app", databases())
	}
	r.net.FailNext("DropDatabase")
	drop := dbOp(KindDeleteDatabase, "DropManagedDatabase", instance.CmdDropDatabase, "app")
	err := r.run(drop)
	if rec := arm.FromError(err); err == nil || rec.Status != http.StatusBadRequest || rec.Code != "DatabaseOperationFailed" ||
		!strings.HasPrefix(rec.Message, "DropManagedDatabase of 'app' failed: ") {
		t.Fatalf("a drop the agent fails = %v, want 400 DatabaseOperationFailed", err)
	}
	var cmd instance.Command
	if _, err := store.Get(ctx, r.st, instance.CommandKey(testRegion, drop.CommandID), &cmd); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the command after the operation: %v, want it removed", err)
	}
	if err := r.run(dbOp(KindDeleteDatabase, "DropManagedDatabase", instance.CmdDropDatabase, "app")); err != nil {
		t.Fatalf("drop database: %v", err)
	}
	if slices.Contains(databases(), "app") {
		t.Errorf("databases %v after the drop, want no app", databases())
	}
}
