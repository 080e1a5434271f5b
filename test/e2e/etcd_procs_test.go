package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// etcdProcs is an etcd cluster of real etcd processes (Debian's etcd-server, 3.4), so that
// members can be killed with SIGKILL and Fog is shown to work against an external etcd.
type etcdProcs struct {
	members   []*proc
	endpoints []string
}

func startEtcdProcs(t *testing.T, n int) *etcdProcs {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (apt-get install etcd-server); .ci/run installs it")
	}
	root := t.TempDir()
	var peers, clients, initial []string
	for i := range n {
		peers = append(peers, "http://"+freeAddr(t))
		clients = append(clients, "http://"+freeAddr(t))
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peers[i]))
	}
	e := &etcdProcs{endpoints: clients}
	for i := range n {
		p := &proc{t: t, name: fmt.Sprintf("etcd%d", i), exe: bin, log: filepath.Join(root, fmt.Sprintf("etcd%d.log", i)), args: []string{
			"--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(root, fmt.Sprintf("m%d", i)),
			"--listen-client-urls", clients[i], "--advertise-client-urls", clients[i],
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "fog-e2e", "--log-level", "warn",
		}}
		p.start()
		t.Cleanup(func() { p.kill9() })
		e.members = append(e.members, p)
	}
	return e
}

// TestEtcdMembersKilled runs a server and two agents, each its own process, on three etcd
// processes, and kills etcd members with SIGKILL: with one gone nothing notices; with two
// gone reads answer or say 503 ServiceUnavailable, writes fail with 503 and change nothing,
// and the primary is fenced within its lease; with the members back everything resumes.
func TestEtcdMembersKilled(t *testing.T) {
	e := startEtcdProcs(t, 3)
	d := startDeploymentWith(t, 1, nil, e.endpoints)
	f := d.f
	p := newPair(t, f, "ek")
	p.create(t, nil)
	p.setupTable(t)
	mustExecRW(t, p, "INSERT INTO w (id) VALUES (1)")

	e.members[0].kill9()
	p.failover(t, false)
	p.waitState(t, "CATCH_UP", 60*time.Second)
	if rg, _ := p.sideOf(t, "Primary"); rg != "rg-s" {
		t.Fatalf("with one etcd member killed, a planned failover left the primary at %s", rg)
	}
	wl := props(p.get(t, "rg-s", "westus"))["listeners"].(map[string]any)["readWrite"].(map[string]any)
	p.rw = fmt.Sprintf("%s:%v", wl["host"], wl["port"])
	mustExecRW(t, p, "INSERT INTO w (id) VALUES (2)")
	pm := postmasterOf(t, f, p.sec)

	e.members[1].kill9()
	start := time.Now()
	fenced := make(chan time.Duration, 1)
	go func() {
		for alive(pm) && time.Since(start) < 30*time.Second {
			time.Sleep(10 * time.Millisecond)
		}
		fenced <- time.Since(start)
	}()
	r := f.call("GET", groupPath("rg-s", "westus", p.name), nil)
	if r.Status != http.StatusOK && r.Status != http.StatusServiceUnavailable {
		t.Errorf("GET without an etcd quorum = %d %s, want 200 or 503", r.Status, r.Body)
	}
	if r.Status == http.StatusServiceUnavailable && r.code() != "ServiceUnavailable" {
		t.Errorf("GET without an etcd quorum: code %s", r.code())
	}
	r = f.call("PUT", miPath("rg-s", p.name+"-s")+"/databases/nope", map[string]any{})
	if r.Status != http.StatusServiceUnavailable || r.code() != "ServiceUnavailable" {
		t.Errorf("a write without an etcd quorum = %d %s, want 503 ServiceUnavailable", r.Status, r.Body)
	}
	took := <-fenced
	t.Logf("primary fenced %s after the second etcd member was killed", took.Round(time.Millisecond))
	if alive(pm) {
		t.Fatal("the primary is still running 30 s after etcd lost its quorum")
	}
	// The lease is 4 s; an agent notices only when a renewal through the server fails, and
	// the server's etcd client needs a moment to see that no member leads.
	if took > 4*time.Second {
		t.Errorf("primary fenced %s after etcd lost its quorum; must be within the lease TTL (4 s)", took)
	}

	e.members[0].start()
	e.members[1].start()
	p.waitState(t, "CATCH_UP", 90*time.Second)
	// The fenced primary is started again once its agent holds the lease: the group takes
	// writes within seconds.
	execRWWithin(t, p, "INSERT INTO w (id) VALUES (3)", 60*time.Second)
	got := p.present(t)
	for _, id := range []int64{1, 2, 3} {
		if !got[id] {
			t.Errorf("row %d is missing", id)
		}
	}
	r = f.call("GET", miPath("rg-s", p.name+"-s")+"/databases/nope", nil)
	if r.Status != http.StatusNotFound {
		t.Errorf("the database whose creation failed without a quorum: GET = %d, want 404", r.Status)
	}
}
