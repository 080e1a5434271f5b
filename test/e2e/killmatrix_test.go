package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/pgtypes"
)

// A fault scenario: during a planned or forced failover, when the named failpoint is
// reached, the victim dies by SIGKILL: the fog process itself, the old primary's postmaster,
// or the new primary's.
type fault struct {
	force  bool
	point  string
	victim string // "fog", "old" or "new"
}

func (f fault) String() string {
	kind := "planned"
	if f.force {
		kind = "forced"
	}
	return fmt.Sprintf("%s_%s_kill_%s", kind, strings.ReplaceAll(f.point, "/", "_"), f.victim)
}

// faultMatrixEnv runs every scenario when set; without it a representative few run.
const faultMatrixEnv = "FOG_FAULT_MATRIX"

func faultScenarios() []fault {
	if os.Getenv(faultMatrixEnv) == "" {
		return []fault{
			{false, failpoint.PlannedFenced, "fog"},
			{false, failpoint.PlannedPromoting, "new"},
			{false, failpoint.AgentPromote, "fog"},
			{false, failpoint.PlannedRouted, "old"},
			{true, failpoint.ForcedFenced, "fog"},
			{true, failpoint.ForcedPromoting, "new"},
			{true, failpoint.ForcedRouted, "fog"},
		}
	}
	var out []fault
	planned := []string{failpoint.PlannedAccepted, failpoint.PlannedCheckpoint, failpoint.PlannedFenced, failpoint.PlannedStopped,
		failpoint.PlannedPromoting, failpoint.PlannedPromoted, failpoint.PlannedRouted, failpoint.PlannedRejoining}
	forced := []string{failpoint.ForcedAccepted, failpoint.ForcedFenced, failpoint.ForcedConfirmed, failpoint.ForcedPromoting,
		failpoint.ForcedPromoted, failpoint.ForcedRouted, failpoint.ForcedRejoining}
	for _, v := range []string{"fog", "old", "new"} {
		for _, p := range planned {
			out = append(out, fault{false, p, v})
		}
		for _, p := range forced {
			out = append(out, fault{true, p, v})
		}
	}
	for _, force := range []bool{false, true} {
		out = append(out, fault{force, failpoint.AgentPromote, "fog"}, fault{force, failpoint.AgentFence, "fog"})
	}
	return out
}

// TestFaultMatrixCoversEveryPoint keeps the full matrix honest: every failpoint a site can
// hit is in it.
func TestFaultMatrixCoversEveryPoint(t *testing.T) {
	t.Setenv(faultMatrixEnv, "1")
	have := map[string]bool{}
	for _, f := range faultScenarios() {
		have[f.point] = true
	}
	for _, p := range failpoint.Points {
		if !have[p] {
			t.Errorf("failpoint %s is in no fault scenario", p)
		}
	}
}

// TestFailoverFaults kills the real fog binary, or a postgres, at each step of planned and
// forced failover while a writer commits through the read-write listener and a checker writes
// straight to both instances, and checks afterwards that (a) no acknowledged commit of a
// planned failover is missing, (b) a forced failover lost only commits after the switch point
// it reports, (c) the two instances never both accepted writes in overlapping time, (d) the
// group settles with the side the user chose as primary, or back as it was with the operation
// Failed, and (e) no operation stays InProgress. Set FOG_FAULT_MATRIX=1 for every step and
// victim; by default a representative few run.
func TestFailoverFaults(t *testing.T) {
	dir := t.TempDir()
	base := addressBase()
	marks := t.TempDir()
	proc := startFogProcess(t, dir, base)
	f := proc.asFog(t, dir)
	p := newPair(t, f, "km")
	p.create(t, nil)
	p.setupTable(t)
	mustExecRW(t, p, "CREATE TABLE chk (src text, at timestamptz DEFAULT clock_timestamp())")

	for _, sc := range faultScenarios() {
		ok := t.Run(sc.String(), func(t *testing.T) {
			// Restart fog with the failpoint armed.
			stopProcess(t, proc)
			env := []string{failpoint.DirEnv + "=" + marks}
			action := "mark+sleep(1500)"
			if sc.victim == "fog" {
				action = "kill"
			}
			env = append(env, failpoint.Env+"="+sc.point+"="+action)
			_ = os.Remove(filepath.Join(marks, failpoint.MarkFile(sc.point)))
			proc = startFogProcess(t, dir, base, env...)
			f = proc.asFog(t, dir)
			p.f = f
			settle(t, p)
			runFault(t, p, sc, func() *fogProcess { return proc }, func(np *fogProcess) { proc = np; p.f = np.asFog(t, dir) }, dir, base, marks)
		})
		if !ok {
			break // later scenarios start from this one's state
		}
	}
	stopProcess(t, proc)
}

func stopProcess(t *testing.T, p *fogProcess) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("fog did not stop within 2 minutes of SIGTERM")
	}
}

func mustExecRW(t *testing.T, p *pair, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}

// execRWWithin runs sql through the read-write listener, retrying while the primary cannot
// take it yet (a fenced primary that Fog is starting again answers "the database system is
// starting up" for a moment).
func execRWWithin(t *testing.T, p *pair, sql string, within time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN)
		if err == nil {
			_, err = c.Exec(ctx, sql)
			c.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not accepted within %s: %v", sql, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settle waits until the group has no operation running and replicates, and both instances
// are Ready: after fog restarts, what its agents published before they stopped (Stopped) is
// what a GET shows until they have started the servers again.
func settle(t *testing.T, p *pair) {
	t.Helper()
	p.waitState(t, "CATCH_UP", 90*time.Second)
	for _, side := range []struct{ rg, name string }{{"rg-p", p.name + "-p"}, {"rg-s", p.name + "-s"}} {
		eventually(t, 90*time.Second, side.name+" to be Ready", func() bool {
			r := p.f.call("GET", miPath(side.rg, side.name), nil)
			return r.Status == http.StatusOK && props(r.json(t))["state"] == "Ready"
		})
	}
	p.waitState(t, "CATCH_UP", 90*time.Second)
}

func runFault(t *testing.T, p *pair, sc fault, cur func() *fogProcess, replace func(*fogProcess), dir, base, marks string) {
	oldRG, oldLoc := p.sideOf(t, "Primary")
	newRG, newLoc := p.sideOf(t, "Secondary")
	oldInst, newInst := p.prim, p.sec
	if oldRG == "rg-s" {
		oldInst, newInst = p.sec, p.prim
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, waitW := p.runWriter(ctx, 5*time.Millisecond)
	chk := startChecker(ctx, p.f.info.CACert, oldInst, newInst)
	time.Sleep(300 * time.Millisecond)

	action := "failover"
	if sc.force {
		action = "forceFailoverAllowDataLoss"
	}
	posted := time.Now().Add(-time.Second)
	r, err := p.f.try("POST", groupPath(newRG, newLoc, p.name)+"/"+action, nil)
	opPath := ""
	switch {
	case err != nil && sc.victim == "fog":
		// The failpoint killed fog after it recorded the operation and before it answered
		// 202 (the forced path reaches its first steps in well under a millisecond). A client
		// that lost its answer finds out what happened from the activity log, below.
		t.Logf("POST %s lost its answer (%v): fog died at %s first", action, err, sc.point)
	case err != nil:
		t.Fatalf("POST %s: %v", action, err)
	case r.Status != http.StatusAccepted:
		t.Fatalf("POST %s = %d %s", action, r.Status, r.Body)
	default:
		u, err := url.Parse(r.Header.Get("Azure-AsyncOperation"))
		if err != nil {
			t.Fatal(err)
		}
		opPath = u.RequestURI()
	}

	switch sc.victim {
	case "fog":
		done := make(chan struct{})
		go func() { _ = cur().cmd.Wait(); close(done) }()
		select {
		case <-done:
			t.Logf("fog killed itself at %s", sc.point)
		case <-time.After(60 * time.Second):
			t.Logf("failpoint %s was not reached; stopping fog", sc.point)
			stopProcess(t, cur())
		}
		replace(startFogProcess(t, dir, base))
	default:
		inst := oldInst
		if sc.victim == "new" {
			inst = newInst
		}
		if waitFile(filepath.Join(marks, failpoint.MarkFile(sc.point)), 60*time.Second) {
			if pid, ok := findPostmaster(p.f, inst); ok {
				t.Logf("killing the %s primary's postmaster %d at %s", sc.victim, pid, sc.point)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			} else {
				t.Logf("the %s primary is not running at %s; nothing to kill", sc.victim, sc.point)
			}
		} else {
			t.Logf("failpoint %s was not reached", sc.point)
		}
	}

	// (d), (e): the operation ends, and the group settles as the outcome says.
	var status map[string]any
	if opPath == "" {
		status = lostPostOutcome(t, p, posted)
	} else {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			st := p.f.call("GET", opPath, nil)
			if st.Status == http.StatusOK {
				status = st.json(t)
				if status["status"] != "InProgress" {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the operation is still %v 2 minutes after the fault", status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("operation ended %v %v", status["status"], status["error"])
	settle(t, p)
	wantPrimary := oldRG
	if status["status"] == "Succeeded" {
		wantPrimary = newRG
	} else if status["status"] != "Failed" {
		t.Fatalf("operation status %v", status["status"])
	}
	if got, _ := p.sideOf(t, "Primary"); got != wantPrimary {
		t.Errorf("operation %v but the primary is %s, want %s", status["status"], got, wantPrimary)
	}
	g := p.get(t, oldRG, oldLoc)
	if s := props(g)["replicationState"]; s != "CATCH_UP" {
		t.Errorf("replicationState = %v after settling", s)
	}

	time.Sleep(300 * time.Millisecond) // a few commits on whichever side is primary now
	cancel()
	waitW()
	chk.wait()

	// (a), (b): acknowledged commits.
	present := p.present(t)
	switchPoint := pgtypes.LSN(1<<64 - 1)
	if sc.force && status["status"] == "Succeeded" {
		eventually(t, 60*time.Second, "the lost range of the forced failover", func() bool {
			lf, _ := props(p.get(t, oldRG, oldLoc))["lastForcedFailover"].(map[string]any)
			lw, _ := lf["lostWal"].(map[string]any)
			if lw == nil {
				return false
			}
			switchPoint, _ = pgtypes.ParseLSN(lw["fromLsn"].(string))
			return true
		})
	}
	var missing, missingAfterSwitch int
	for id, lsn := range w.acked {
		if !present[id] {
			missing++
			if lsn > switchPoint {
				missingAfterSwitch++
			}
		}
	}
	t.Logf("writer: %d commits acknowledged, %d missing (%d after the switch point), %d cuts; checker: %d/%d writes on old/new",
		len(w.acked), missing, missingAfterSwitch, w.cuts, len(chk.ok[0]), len(chk.ok[1]))
	if missing != missingAfterSwitch {
		t.Errorf("%d acknowledged commits are missing that were not after the reported switch point", missing-missingAfterSwitch)
	}
	if len(w.bad) > 0 {
		t.Errorf("writer saw %d errors other than cut connections, first: %v", len(w.bad), w.bad[0])
	}
	// (c): never two writers.
	if a, b, ok := chk.overlap(); ok {
		t.Errorf("both instances accepted writes in overlapping time: old %v-%v, new %v-%v",
			a[0].Format(time.StampMicro), a[1].Format(time.StampMicro), b[0].Format(time.StampMicro), b[1].Format(time.StampMicro))
	}
}

// lostPostOutcome finds out, as a client whose POST lost its answer would, what became of
// the failover it asked for: the activity log lists the group's operations begun since
// posted, running ones included; the newest one's end event gives its outcome. If fog died
// before it recorded any operation, nothing changed, which the caller checks as a failure
// (the primary stays where it was).
func lostPostOutcome(t *testing.T, p *pair, posted time.Time) map[string]any {
	t.Helper()
	filter := fmt.Sprintf("eventTimestamp ge '%s'", posted.UTC().Format(time.RFC3339Nano))
	ofGroup := func(e map[string]any) bool {
		id, _ := e["resourceId"].(string)
		return strings.HasSuffix(strings.ToLower(id), "/instancefailovergroups/"+p.name)
	}
	opID := ""
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for _, e := range activity(t, p.f, filter) {
			if !ofGroup(e) {
				continue
			}
			id, _ := e["correlationId"].(string)
			if opID == "" {
				opID = id
				t.Logf("the activity log shows the lost POST's operation %s", opID)
			}
			st, _ := e["status"].(map[string]any)
			if id == opID && st["value"] != "Started" {
				out := map[string]any{"status": st["value"]}
				if pr, _ := e["properties"].(map[string]any); pr != nil {
					out["error"] = pr["statusMessage"]
				}
				return out
			}
		}
		if opID == "" && time.Since(posted) > 30*time.Second {
			t.Logf("no operation was recorded for the lost POST: nothing changed")
			return map[string]any{"status": "Failed", "error": "never recorded"}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the lost POST's operation %q did not end within 2 minutes", opID)
	return nil
}

func waitFile(path string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// checker writes straight to both instances (not through a listener) and remembers the time
// span of every write each one accepted.
type checker struct {
	mu sync.Mutex
	ok [2][][2]time.Time
	wg sync.WaitGroup
}

func startChecker(ctx context.Context, ca string, insts ...map[string]any) *checker {
	c := &checker{}
	for i, inst := range insts {
		pp := props(inst)
		host, port := pp["host"].(string), fmt.Sprint(pp["port"])
		c.wg.Go(func() {
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(context.Background())
				}
			}()
			for ctx.Err() == nil {
				if conn == nil {
					cfg, _ := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=fogadmin dbname=app sslmode=verify-full connect_timeout=2", host, port))
					cfg.Password = password
					pool := x509.NewCertPool()
					pool.AppendCertsFromPEM([]byte(ca))
					cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: host}
					cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					cn, err := pgx.ConnectConfig(cctx, cfg)
					cancel()
					if err != nil {
						sleepCtx(ctx, 20*time.Millisecond)
						continue
					}
					conn = cn
				}
				start := time.Now()
				qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := conn.Exec(qctx, "INSERT INTO chk (src) VALUES ($1)", host)
				cancel()
				end := time.Now()
				if err == nil {
					c.mu.Lock()
					c.ok[i] = append(c.ok[i], [2]time.Time{start, end})
					c.mu.Unlock()
				} else {
					// A standby's refusal or a cut connection: start again with a fresh one.
					conn.Close(context.Background())
					conn = nil
				}
				sleepCtx(ctx, 10*time.Millisecond)
			}
		})
	}
	return c
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (c *checker) wait() { c.wg.Wait() }

// overlap returns a write accepted by each instance whose spans overlap, if any.
func (c *checker) overlap() ([2]time.Time, [2]time.Time, bool) {
	for _, x := range c.ok[0] {
		for _, y := range c.ok[1] {
			if !x[0].After(y[1]) && !y[0].After(x[1]) {
				return x, y, true
			}
		}
	}
	return [2]time.Time{}, [2]time.Time{}, false
}
