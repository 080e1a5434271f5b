package agent

import (
	"context"
	"time"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/store"
)

// TestWorker is a worker a test drives by hand, one reconcile at a time.
type TestWorker struct{ w *worker }

// NewTestWorker returns the worker of instance uid.
func NewTestWorker(a *Agent, uid string) *TestWorker {
	return &TestWorker{&worker{a: a, uid: uid, kick: make(chan struct{}, 1), log: a.log.With("uid", uid)}}
}

// Reconcile reads the instance's desired state, reconciles it and publishes what it observed,
// as one wake-up of the worker does.
func (t *TestWorker) Reconcile(ctx context.Context) instance.Status {
	var s instance.Spec
	if _, err := store.Get(ctx, t.w.a.st, instance.SpecKey(t.w.a.cfg.Region, t.w.uid), &s); err != nil {
		panic(err)
	}
	st := t.w.reconcile(ctx, s)
	t.w.publish(ctx, st)
	return st
}

// Transitions lists the rows of the table by name, and those whose act passes the lease gate.
func Transitions() (names []string, gated map[string]bool) {
	gated = map[string]bool{}
	for _, t := range transitions {
		names = append(names, t.name)
		gated[t.name] = t.lease
	}
	return names, gated
}

// RunBackups runs the agent's backup runner until ctx ends (Run does it in the agent).
func (a *Agent) RunBackups(ctx context.Context) { go a.bk.run(ctx) }

// RunCommands carries out the instance's pending commands, as a wake-up of the worker does
// after it reconciled.
func (t *TestWorker) RunCommands(ctx context.Context) {
	var s instance.Spec
	if _, err := store.Get(ctx, t.w.a.st, instance.SpecKey(t.w.a.cfg.Region, t.w.uid), &s); err != nil {
		panic(err)
	}
	t.w.runCommands(ctx, s)
}

// RunRestores runs the agent's restore runner until ctx ends (Run does it in the agent);
// the channel is closed once it has ended.
func (t *TestWorker) RunRestores(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() { t.w.a.runRestores(ctx); close(done) }()
	return done
}

// ContainerName is the name of a stanza's container (azure.go).
var ContainerName = containerName

// AzureContainer finds or makes instance uid's container of stanza as an agent with the
// settings b does the first time it configures the instance, and returns its name.
func AzureContainer(ctx context.Context, b BackupConfig, region, uid, stanza string) (string, error) {
	if err := b.validateRepo(); err != nil {
		return "", err
	}
	c, _, err := newAzureRepos(&b.Azure, region).container(ctx, uid, stanza)
	return c.name, err
}

// AzureSetAside sets instance uid's container of stanza aside, as StanzaCreate does when it
// holds another system's history, and returns its name.
func AzureSetAside(ctx context.Context, b BackupConfig, region, uid, stanza string) (string, error) {
	if err := b.validateRepo(); err != nil {
		return "", err
	}
	return newAzureRepos(&b.Azure, region).setAside(ctx, uid, stanza, time.Now())
}
