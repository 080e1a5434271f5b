package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/pgtypes"
)

// writer commits continuously through the read-write listener and remembers every commit
// the server acknowledged, with the WAL position right after it.
type writer struct {
	mu       sync.Mutex
	acked    map[int64]pgtypes.LSN
	bad      []error // errors that are not a cut connection
	cuts     int
	longest  time.Duration // longest time without a successful commit
	attempts int
}

func (p *pair) runWriter(ctx context.Context, every time.Duration) (*writer, func()) {
	w := &writer{acked: map[int64]pgtypes.LSN{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		lastOK := time.Now()
		id := p.idBase
		p.idBase += 1 << 32 // a later writer on the same table starts above every id of this one
		for ctx.Err() == nil {
			if conn == nil {
				c, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN)
				if err != nil {
					w.note(err)
					time.Sleep(5 * time.Millisecond)
					continue
				}
				conn = c
			}
			id++
			var lsn string
			_, err := conn.Exec(ctx, "INSERT INTO w (id) VALUES ($1)", id)
			if err == nil {
				err = conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn)
				if err != nil {
					// The commit was acknowledged; only its position is unknown.
					lsn = "FFFFFFFF/FFFFFFFF"
				}
				l, _ := pgtypes.ParseLSN(lsn)
				w.mu.Lock()
				w.acked[id] = l
				if d := time.Since(lastOK); d > w.longest {
					w.longest = d
				}
				w.attempts++
				w.mu.Unlock()
				lastOK = time.Now()
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.note(err)
				conn.Close(context.Background())
				conn = nil
				continue
			}
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}()
	return w, func() { <-done }
}

func (w *writer) note(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if connectionError(err) {
		w.cuts++
	} else {
		w.bad = append(w.bad, err)
	}
}

// reader queries through the read-only listener and checks it only ever reaches a standby.
type reader struct {
	mu        sync.Mutex
	reads     int
	onPrimary int
	bad       []error
}

func (p *pair) runReader(ctx context.Context, roName string) (*reader, func()) {
	r := &reader{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			c, err := p.listenerConn(ctx, p.ro, "app", roName)
			if err == nil {
				var rec bool
				var n int
				err = c.QueryRow(ctx, "SELECT pg_is_in_recovery(), count(*) FROM w").Scan(&rec, &n)
				c.Close(context.Background())
				r.mu.Lock()
				if err == nil {
					r.reads++
					if !rec {
						r.onPrimary++
					}
				}
				r.mu.Unlock()
			}
			if err != nil && ctx.Err() == nil && !connectionError(err) {
				r.mu.Lock()
				r.bad = append(r.bad, err)
				r.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return r, func() { <-done }
}

// present returns the ids in w present on the current primary.
func (p *pair) present(t *testing.T) map[int64]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN)
	if err != nil {
		t.Fatalf("connect through the read-write listener: %v", err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT id FROM w")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

func (p *pair) setupTable(t *testing.T) {
	t.Helper()
	p.f.mustSucceed(p.f.call("PUT", miPath("rg-p", p.name+"-p")+"/databases/app", map[string]any{}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN)
	if err != nil {
		t.Fatalf("connect through the read-write listener: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE w (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"); err != nil {
		t.Fatal(err)
	}
	// Replication is asynchronous: wait until the secondary has the table before readers start.
	eventually(t, 10*time.Second, "table on the secondary", func() bool {
		s, err := connect(t, p.f.info.CACert, p.sec, "fogadmin", password, "app")
		if err != nil {
			return false
		}
		defer s.Close(ctx)
		_, err = s.Exec(ctx, "SELECT 1 FROM w LIMIT 1")
		return err == nil
	})
}

// failover runs POST failover (or force) on the current secondary and returns the result.
func (p *pair) failover(t *testing.T, force bool) map[string]any {
	t.Helper()
	rg, loc := p.sideOf(t, "Secondary")
	action := "failover"
	if force {
		action = "forceFailoverAllowDataLoss"
	}
	r := p.f.call("POST", groupPath(rg, loc, p.name)+"/"+action, nil)
	st := p.f.wait(r)
	if st["status"] != "Succeeded" {
		t.Fatalf("%s: %v", action, st)
	}
	res := p.f.call("GET", r.Header.Get("Location"), nil)
	if res.Status != http.StatusOK {
		t.Fatalf("%s result = %d %s", action, res.Status, res.Body)
	}
	out := res.json(t)
	if props(out)["replicationRole"] != "Primary" {
		t.Errorf("%s result replicationRole = %v, want Primary (the side it was addressed to)", action, props(out)["replicationRole"])
	}
	return out
}

// TestPlannedFailoverUnderLoad fails over three times (there, back, there again) while a
// writer commits every few milliseconds through the read-write listener and a reader reads
// through the read-only listener. No acknowledged commit may be lost, and clients see no
// error but cut connections.
func TestPlannedFailoverUnderLoad(t *testing.T) {
	f := startFog(t, "", withBackups)
	p := newPair(t, f, "pf")
	g := p.create(t, nil)
	if s := props(g)["replicationState"]; s != "CATCH_UP" {
		t.Fatalf("replicationState after create = %v, want CATCH_UP", s)
	}
	p.setupTable(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, waitW := p.runWriter(ctx, 5*time.Millisecond)
	roName := strings.Replace(p.rwFQDN, p.name+".", p.name+".secondary.", 1)
	r, waitR := p.runReader(ctx, roName)
	time.Sleep(500 * time.Millisecond)

	wantPrimary := []string{"rg-s", "rg-p", "rg-s"}
	for i, want := range wantPrimary {
		res := p.failover(t, false)
		if !strings.Contains(res["id"].(string), "/resourceGroups/"+want+"/") {
			t.Errorf("failover %d: result id %v, want the %s side", i+1, res["id"], want)
		}
		// Both sides agree on the new roles.
		for _, side := range [][2]string{{"rg-p", "eastus"}, {"rg-s", "westus"}} {
			gp := props(p.get(t, side[0], side[1]))
			wantRole := "Secondary"
			if side[0] == want {
				wantRole = "Primary"
			}
			if gp["replicationRole"] != wantRole {
				t.Errorf("failover %d: %s reports %v, want %s", i+1, side[0], gp["replicationRole"], wantRole)
			}
			pr := gp["partnerRegions"].([]any)[0].(map[string]any)
			if pr["replicationRole"] == wantRole {
				t.Errorf("failover %d: %s's partner also reports %v", i+1, side[0], wantRole)
			}
			pairs := gp["managedInstancePairs"].([]any)[0].(map[string]any)
			if !strings.Contains(pairs["primaryManagedInstanceId"].(string), "/resourceGroups/"+want+"/") {
				t.Errorf("failover %d: managedInstancePairs primary = %v, want the %s instance", i+1, pairs["primaryManagedInstanceId"], want)
			}
		}
		p.waitState(t, "CATCH_UP", 60*time.Second)
		time.Sleep(300 * time.Millisecond)
	}
	cancel()
	waitW()
	waitR()

	present := p.present(t)
	lost := 0
	for id := range w.acked {
		if !present[id] {
			lost++
		}
	}
	t.Logf("writer: %d commits acknowledged, %d cut connections, longest gap between commits %s; reader: %d reads",
		len(w.acked), w.cuts, w.longest.Round(time.Millisecond), r.reads)
	if lost != 0 {
		t.Errorf("%d acknowledged commits are missing after three planned failovers", lost)
	}
	if len(w.bad) > 0 {
		t.Errorf("writer saw %d errors other than cut connections, first: %v", len(w.bad), w.bad[0])
	}
	if len(w.acked) < 100 {
		t.Errorf("only %d commits acknowledged; the writer did not run", len(w.acked))
	}
	if r.onPrimary > 0 {
		t.Errorf("the read-only listener routed %d reads to a primary", r.onPrimary)
	}
	if len(r.bad) > 0 {
		t.Errorf("reader saw %d unexpected errors, first: %v", len(r.bad), r.bad[0])
	}
	if r.reads == 0 {
		t.Error("no read succeeded through the read-only listener")
	}
}

// walSenderPID finds the primary's walsender process, to pause it.
func walSenderPID(t *testing.T, ca string, inst map[string]any) int {
	t.Helper()
	c := mustConnect(t, ca, inst, "postgres")
	defer c.Close(context.Background())
	var pid int
	if err := c.QueryRow(context.Background(), "SELECT pid FROM pg_stat_replication LIMIT 1").Scan(&pid); err != nil {
		t.Fatalf("walsender pid: %v", err)
	}
	return pid
}

func postmasterOf(t *testing.T, f *fog, inst map[string]any) int {
	t.Helper()
	pid, ok := findPostmaster(f, inst)
	if !ok {
		t.Fatalf("no postmaster found for %v", inst["name"])
	}
	return pid
}

// findPostmaster returns the pid of the instance's running postmaster, if any.
func findPostmaster(f *fog, inst map[string]any) (int, bool) {
	files, _ := filepath.Glob(filepath.Join(f.dataDir, "regions", inst["location"].(string), "*", "pgdata", "postmaster.pid"))
	// A `fog agent` of the region keeps its instances under its data directory's instances/.
	more, _ := filepath.Glob(filepath.Join(f.dataDir, "regions", inst["location"].(string), "instances", "*", "pgdata", "postmaster.pid"))
	files = append(files, more...)
	for _, file := range files {
		b, _ := os.ReadFile(file)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 3 && strings.Contains(string(b), "\n"+fmt.Sprint(props(inst)["port"])+"\n") {
			// postmaster.pid: pid, datadir, start time, port, socket dir, listen address
			if strings.Contains(string(b), props(inst)["host"].(string)) {
				pid, _ := strconv.Atoi(lines[0])
				return pid, alive(pid)
			}
		}
	}
	return 0, false
}

// TestForcedFailoverAfterKill kills the primary's postgres with SIGKILL while a writer runs,
// with the primary's WAL sender paused so that acknowledged commits really are lost, and
// forces a failover. The writer must be back within a second, the old primary must come back
// rewound as the new secondary with no manual step, and the lost WAL range reported must
// account for exactly the acknowledged commits that are missing.
func TestForcedFailoverAfterKill(t *testing.T) {
	f := startFog(t, "", withBackups)
	p := newPair(t, f, "ff")
	p.create(t, nil)
	p.setupTable(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, waitW := p.runWriter(ctx, 5*time.Millisecond)
	roName := strings.Replace(p.rwFQDN, p.name+".", p.name+".secondary.", 1)
	rd, waitR := p.runReader(ctx, roName)
	time.Sleep(300 * time.Millisecond)

	// Pause the primary's WAL sender: what the primary acknowledges from now on is never
	// sent. Then kill the primary, and the paused sender with it, so nothing more leaves.
	sender := walSenderPID(t, f.info.CACert, p.prim)
	if err := syscall.Kill(sender, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	pm := postmasterOf(t, f, p.prim)
	if err := syscall.Kill(pm, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(sender, syscall.SIGKILL)
	time.Sleep(20 * time.Millisecond) // a commit in flight at the kill has failed by now
	w.mu.Lock()
	ackedBeforeKill := len(w.acked)
	w.mu.Unlock()

	start := time.Now()
	r := f.call("POST", groupPath("rg-s", "westus", p.name)+"/forceFailoverAllowDataLoss", nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("force failover = %d %s", r.Status, r.Body)
	}
	// Time from the call to the first commit through the listener.
	var firstCommit time.Duration
	for firstCommit == 0 && time.Since(start) < 30*time.Second {
		w.mu.Lock()
		if len(w.acked) > ackedBeforeKill {
			firstCommit = time.Since(start)
		}
		w.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
	st := f.wait(r)
	if st["status"] != "Succeeded" {
		t.Fatalf("forced failover: %v", st)
	}
	g := p.waitState(t, "CATCH_UP", 90*time.Second)
	cancel()
	waitW()
	waitR()
	t.Logf("first commit through the listener %s after the forced failover call; reader: %d reads", firstCommit.Round(time.Millisecond), rd.reads)
	if rd.onPrimary > 0 {
		t.Errorf("the read-only listener routed %d reads to a primary", rd.onPrimary)
	}
	if len(rd.bad) > 0 {
		t.Errorf("reader saw %d unexpected errors, first: %v", len(rd.bad), rd.bad[0])
	}
	if firstCommit == 0 || firstCommit > 5*time.Second {
		t.Errorf("first commit after the call took %s", firstCommit)
	}

	if props(g)["replicationRole"] == nil {
		t.Fatal("no role")
	}
	lf, _ := props(p.get(t, "rg-s", "westus"))["lastForcedFailover"].(map[string]any)
	if lf == nil || lf["lostWalKnown"] != true {
		t.Fatalf("lastForcedFailover = %v, want the lost WAL range", lf)
	}
	lw := lf["lostWal"].(map[string]any)
	from, err := pgtypes.ParseLSN(lw["fromLsn"].(string))
	if err != nil {
		t.Fatalf("lost fromLsn %v: %v", lw["fromLsn"], err)
	}
	to, err := pgtypes.ParseLSN(lw["toLsn"].(string))
	if err != nil {
		t.Fatalf("lost toLsn %v: %v", lw["toLsn"], err)
	}
	present := p.present(t)
	var missing, kept int
	for id, lsn := range w.acked {
		switch {
		case !present[id]:
			missing++
			if lsn <= from {
				t.Errorf("commit %d (WAL up to %s) is missing but lies before the reported loss start %s", id, lsn, from)
			}
		case lsn > from && lsn != pgtypes.LSN(^uint64(0)):
			// Present although after the switch point: only possible for commits made on the
			// new primary, which have later LSNs on the new timeline.
			kept++
		}
		if lsn <= from && !present[id] {
			t.Errorf("commit %d before the switch point is missing", id)
		}
	}
	t.Logf("lost WAL %s..%s (%v bytes); %d acknowledged commits missing, %d acknowledged in all", from, to, lw["bytes"], missing, len(w.acked))
	if missing == 0 {
		t.Error("no acknowledged commit was lost although the primary's sender was paused; the test did not test loss")
	}
	if b, _ := lw["bytes"].(float64); missing > 0 && b <= 0 {
		t.Errorf("lost bytes = %v with %d commits missing", lw["bytes"], missing)
	}
	if to <= from {
		t.Errorf("lost range %s..%s is empty", from, to)
	}
	// The report counts transactions, decoded from the WAL before the rewind: every missing
	// acknowledged commit, and at most the one in flight at the kill besides.
	n, _ := lw["transactionsLost"].(float64)
	txs, _ := lw["transactions"].([]any)
	if int(n) < missing || int(n) > missing+1 || len(txs) != int(n) {
		t.Errorf("transactionsLost = %v with %d listed, %d acknowledged commits missing", lw["transactionsLost"], len(txs), missing)
	}
	for _, x := range txs {
		tx := x.(map[string]any)
		rels, _ := tx["relations"].([]any)
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(tx["commitTime"]))
		if tx["xid"] == nil || err != nil || at.Before(start.Add(-time.Minute)) || at.After(start) || !slices.Contains(rels, any("app.public.w")) {
			t.Errorf("lost transaction %v: want an xid, a commit time before the failover and the relation app.public.w", tx)
			break
		}
	}
	evs, _ := props(p.get(t, "rg-s", "westus"))["events"].([]any)
	var said string
	for _, e := range evs {
		if e := e.(map[string]any); e["kind"] == "LostWAL" {
			said = fmt.Sprint(e["message"])
		}
	}
	if !strings.Contains(said, fmt.Sprintf("%d transaction", int(n))) || !strings.Contains(said, "relations app.public.w") {
		t.Errorf("the LostWAL event says %q", said)
	}
	if len(w.bad) > 0 {
		t.Errorf("writer saw %d errors other than cut connections, first: %v", len(w.bad), w.bad[0])
	}
	// The old primary follows the new one: a row written now reaches it.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	c, err := p.listenerConn(ctx2, p.rw, "app", p.rwFQDN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx2, "INSERT INTO w (id) VALUES (-1)"); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx2)
	old := mustConnect(t, f.info.CACert, p.prim, "app")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		var rec bool
		if err := old.QueryRow(ctx2, "SELECT count(*), pg_is_in_recovery() FROM w WHERE id = -1").Scan(&n, &rec); err == nil && n == 1 {
			if !rec {
				t.Error("the old primary is not in recovery")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the old primary did not receive a row written after the forced failover")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestListenerCancel: a query cancel sent to the listener reaches the server running the
// query, as psql's Ctrl-C and drivers' cancel do.
func TestListenerCancel(t *testing.T) {
	f := startFog(t, "")
	p := newPair(t, f, "cancel")
	p.create(t, nil)
	ctx := context.Background()
	c, err := p.listenerConn(ctx, p.rw, "postgres", p.rwFQDN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.Exec(ctx, "SELECT pg_sleep(30)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := c.PgConn().CancelRequest(ctx); err != nil {
		t.Fatalf("cancel request: %v", err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "57014") {
			t.Fatalf("query after cancel: %v, want SQLSTATE 57014 (query_canceled)", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("cancel took effect after %s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the query was not canceled")
	}
	// The session survives a cancel.
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("query after cancel: %v", err)
	}
}
