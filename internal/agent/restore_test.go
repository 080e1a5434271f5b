package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agent/agenttest"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/store"
)

// command reads command id of region eastus (ok false: it is gone).
func (w *world) command(id string) (instance.Command, bool) {
	var c instance.Command
	_, err := store.Get(w.ctx, w.st, instance.CommandKey("eastus", id), &c)
	return c, err == nil
}

// waitCommand polls command id until ok holds for it.
func (w *world) waitCommand(id, what string, ok func(c instance.Command, there bool) bool) instance.Command {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, there := w.command(id)
		if ok(c, there) {
			return c
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("command %s: waiting for %s; it reads %+v (there: %v)", id, what, c, there)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func restoreCommand(id, database string, at time.Time) instance.Command {
	return instance.Command{ID: id, InstanceUID: "uid-p", Kind: instance.CmdRestoreDatabase, SourceDatabase: "app",
		Database: database, Owner: "admin1", Time: at, Created: time.Now().UTC()}
}

// TestRestoreCommand drives a restore command through the agent with in-memory servers: it
// runs beside the worker, which keeps reconciling (a failover must not wait for it), and
// publishes its progress on the command; an agent that stops leaves it pending, and the
// next one resumes it to completion; a name that is taken fails it, a deleted command
// cancels it, and every one ends by removing what it made; a restore the agent cannot do
// ends at once with why.
func TestRestoreCommand(t *testing.T) {
	w := newWorld(t)
	p := specP
	p.Backup = &instance.BackupSpec{Stanza: "st1", RetentionDays: 7}
	w.set(p)
	w.converge("uid-p")
	pg := w.net.PG("uid-p")
	pg.Do(func(pg *agenttest.PG) { pg.Databases = append(pg.Databases, "app") })

	put := func(c instance.Command) {
		t.Helper()
		if err := store.Put(w.ctx, w.st, instance.CommandKey("eastus", c.ID), c); err != nil {
			t.Fatal(err)
		}
	}
	gate := make(chan struct{})
	pg.Do(func(pg *agenttest.PG) { pg.RestoreGate = gate })
	put(restoreCommand("r1", "app_copy", time.Now().Add(-time.Minute)))
	ctx1, stop1 := context.WithCancel(w.ctx)
	ended1 := w.workers["uid-p"].RunRestores(ctx1)
	w.workers["uid-p"].RunCommands(w.ctx)
	w.waitCommand("r1", "progress", func(c instance.Command, _ bool) bool { return c.Progress >= 40 })

	// The worker reconciles while the restore runs, and does not start it twice.
	p = w.spec("uid-p")
	p.VCores = 4
	w.set(p)
	if st := w.converge("uid-p"); st.ObservedGeneration != w.spec("uid-p").Generation {
		t.Fatalf("the worker did not reconcile while a restore ran: %+v", st)
	}
	w.workers["uid-p"].RunCommands(w.ctx)
	if c, _ := w.command("r1"); c.Done || w.pg("uid-p").Restores != 1 {
		t.Fatalf("while the restore runs: command %+v, %d restores begun", c, w.pg("uid-p").Restores)
	}

	// The agent stops: the command stays pending, the scratch is stopped, nothing discarded.
	stop1()
	<-ended1
	if c, _ := w.command("r1"); c.Done {
		t.Fatalf("a restore interrupted by the agent's stop reads %+v", c)
	}
	if ended, ok := w.pg("uid-p").Ended["r1"]; !ok || ended {
		t.Errorf("EndRestore after the agent stopped: called %v, discard %v; want called, keeping", ok, ended)
	}

	// The next agent resumes it.
	w.restart("uid-p")
	pg.Do(func(pg *agenttest.PG) { pg.RestoreGate = nil })
	w.workers["uid-p"].RunRestores(w.ctx)
	w.workers["uid-p"].RunCommands(w.ctx)
	c := w.waitCommand("r1", "restored", func(c instance.Command, _ bool) bool { return c.Restored })
	if c.Error != "" || c.Progress != 100 || c.Done {
		t.Fatalf("the resumed restore reads %+v; want Restored, not yet Done", c)
	}
	w.waitCommand("r1", "its leftovers removed", func(instance.Command, bool) bool { return w.pg("uid-p").Ended["r1"] })
	// The worker ends it, having published the new database first: a reader who sees the
	// operation succeed finds the database.
	w.workers["uid-p"].RunCommands(w.ctx)
	if c, _ = w.command("r1"); !c.Done || c.Error != "" {
		t.Fatalf("after the worker's commands the restore reads %+v", c)
	}
	if st := w.status("uid-p"); !hasDB(st, "app_copy") {
		t.Errorf("the restore is done and the status lists %+v, want app_copy", st.Databases)
	}

	// A name that is taken.
	put(restoreCommand("r2", "app_copy", time.Now().Add(-time.Minute)))
	w.workers["uid-p"].RunCommands(w.ctx)
	c = w.waitCommand("r2", "done", func(c instance.Command, _ bool) bool { return c.Done })
	if !strings.Contains(c.Error, "exists") {
		t.Errorf("a restore into a taken name reads %+v", c)
	}
	w.waitCommand("r2", "its leftovers removed", func(instance.Command, bool) bool { return w.pg("uid-p").Ended["r2"] })

	// A deleted command cancels its restore, which is not written again.
	gate = make(chan struct{})
	defer close(gate)
	pg.Do(func(pg *agenttest.PG) { pg.RestoreGate = gate })
	put(restoreCommand("r3", "app_other", time.Now().Add(-time.Minute)))
	w.workers["uid-p"].RunCommands(w.ctx)
	w.waitCommand("r3", "progress", func(c instance.Command, _ bool) bool { return c.Progress >= 40 })
	if err := w.st.Txn(w.ctx, nil, []store.Op{{Key: instance.CommandKey("eastus", "r3"), Delete: true}}); err != nil {
		t.Fatal(err)
	}
	w.waitCommand("r3", "its leftovers removed", func(_ instance.Command, there bool) bool {
		return !there && w.pg("uid-p").Ended["r3"]
	})
	time.Sleep(50 * time.Millisecond)
	if _, there := w.command("r3"); there || hasDB(w.converge("uid-p"), "app_other") {
		t.Errorf("a cancelled restore: command written again %v, or its database made", there)
	}

	// What the agent cannot do ends at once.
	for _, bad := range []instance.Command{
		restoreCommand("r4", "later", time.Now().Add(time.Hour)),
		restoreCommand("r5", "", time.Now().Add(-time.Minute)),
		restoreCommand("r6", "fog_restore_0123456789ab", time.Now().Add(-time.Minute)),
		restoreCommand("../r7", "x", time.Now().Add(-time.Minute)),
	} {
		put(bad)
		w.workers["uid-p"].RunCommands(w.ctx)
		if c, _ := w.command(bad.ID); !c.Done || !strings.HasPrefix(c.Error, "restore: ") {
			t.Errorf("command %s (%q at %v) reads %+v, want done with why", bad.ID, bad.Database, bad.Time, c)
		}
	}
}

func hasDB(st instance.Status, name string) bool {
	for _, d := range st.Databases {
		if d.Name == name {
			return true
		}
	}
	return false
}

// TestRestoreSweep: an agent that starts removes the directory of a restore whose command is
// gone or done (ending it through the instance's server, which drops what it made) and
// leaves the one of a pending command to its redelivery.
func TestRestoreSweep(t *testing.T) {
	w := newWorld(t)
	p := specP
	p.Backup = &instance.BackupSpec{Stanza: "st1", RetentionDays: 7}
	w.set(p)
	w.converge("uid-p")
	restores := filepath.Join(w.dir, "restores", "eastus")
	for _, id := range []string{"gone", "done", "pending"} {
		if err := os.MkdirAll(filepath.Join(restores, id, "pgdata"), 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(restores, id, "job.json"), []byte(`{"instanceUid":"uid-p","database":"x"}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	done := restoreCommand("done", "x", time.Now().Add(-time.Minute))
	done.Done = true
	pending := restoreCommand("pending", "x", time.Now().Add(-time.Minute))
	for _, c := range []instance.Command{done, pending} {
		if err := store.Put(w.ctx, w.st, instance.CommandKey("eastus", c.ID), c); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(w.ctx)
	ended := w.workers["uid-p"].RunRestores(ctx)
	w.waitCommand("done", "the sweep", func(instance.Command, bool) bool {
		e := w.pg("uid-p").Ended
		return e["gone"] && e["done"]
	})
	cancel()
	<-ended
	for id, want := range map[string]bool{"gone": false, "done": false, "pending": true} {
		if _, err := os.Stat(filepath.Join(restores, id)); (err == nil) != want {
			t.Errorf("after the sweep, %s's directory: %v; want it there %v", id, err, want)
		}
	}
	if _, swept := w.pg("uid-p").Ended["pending"]; swept {
		t.Errorf("the sweep ended the restore of a pending command")
	}
}
