package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/freeport"
	"github.com/fogdb/fog/internal/server"
	"github.com/fogdb/fog/internal/store"
	"github.com/fogdb/fog/internal/store/storetest"
)

// proc is one fog process (server or agent) of a test, run from the real binary.
type proc struct {
	t    *testing.T
	name string
	ns   *netns // where it runs; nil for the test's own network namespace
	exe  string // the program; fog's binary when ""
	args []string
	log  string
	// logFrom is where the current start's output begins in log.
	logFrom int64
	cmd     *exec.Cmd
	done    chan struct{}
}

func startProc(t *testing.T, name, log string, args ...string) *proc {
	t.Helper()
	return startProcIn(t, nil, name, log, args...)
}

// startProcIn starts fog with args inside network namespace ns.
func startProcIn(t *testing.T, ns *netns, name, log string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, ns: ns, args: args, log: log}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *proc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	// waitLog looks only at what this start writes: the log keeps earlier starts' lines.
	if fi, err := f.Stat(); err == nil {
		p.logFrom = fi.Size()
	}
	exe := p.exe
	if exe == "" {
		exe = fogBinary
	}
	cmd := exec.Command(exe, p.args...)
	if p.ns != nil {
		// ip netns exec execs the program in the namespace: the pid stays the program's.
		cmd = exec.Command("ip", append([]string{"netns", "exec", p.ns.name, exe}, p.args...)...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
}

// kill9 kills the process (not its guard, which is what fences when an agent dies).
func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop ends the process as Ctrl-C does, and kills it when it does not end.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(90 * time.Second):
		p.t.Errorf("%s did not stop within 90 s of SIGTERM", p.name)
		p.kill9()
	}
}

// waitLog waits until the process's log holds s.
func (p *proc) waitLog(s string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(p.log)
		if int64(len(b)) >= p.logFrom && strings.Contains(string(b[p.logFrom:]), s) {
			return
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited before %q:\n%s", p.name, s, tail(string(b), 30))
		case <-time.After(50 * time.Millisecond):
		}
	}
	b, _ := os.ReadFile(p.log)
	p.t.Fatalf("%s did not log %q within %s:\n%s", p.name, s, within, tail(string(b), 30))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// deployment is Fog across processes: three etcd members, servers on them, and one `fog
// agent` per region, each process with its own directory.
type deployment struct {
	t       *testing.T
	root    string
	etcd    *storetest.EtcdCluster
	servers []*proc
	urls    []string
	clients []server.ClientConfig
	agents  map[string]*proc
	f       *fog
}

func startDeployment(t *testing.T, nServers int) *deployment {
	return startDeploymentIn(t, nServers, nil)
}

// startDeploymentIn starts the deployment; with lab, the servers (on the embedded store,
// one) run in lab's "cp" namespace and each region's agent in the region's namespace.
func startDeploymentIn(t *testing.T, nServers int, lab *netlab) *deployment {
	return startDeploymentWith(t, nServers, lab, nil)
}

// startDeploymentWith starts the deployment on the etcd endpoints given, if any.
func startDeploymentWith(t *testing.T, nServers int, lab *netlab, etcdEndpoints []string, serverArgs ...string) *deployment {
	t.Helper()
	d := &deployment{t: t, root: t.TempDir(), agents: map[string]*proc{}}
	storeArgs := serverArgs
	if etcdEndpoints != nil {
		storeArgs = append(storeArgs, "--etcd-endpoints", strings.Join(etcdEndpoints, ","))
	} else if lab == nil {
		d.etcd = storetest.StartEtcd(t, 3)
		storeArgs = append(storeArgs, "--etcd-endpoints", strings.Join(d.etcd.Endpoints(), ","))
	}
	for i := range nServers {
		dir := filepath.Join(d.root, fmt.Sprintf("server%d", i))
		var ns *netns
		var addr string
		if lab != nil {
			// The control plane's own namespace, or one server in each region's.
			name := "cp"
			if lab.ns["cp"] == nil {
				name = []string{"eastus", "westus"}[i]
			}
			ns, addr = lab.ns[name], lab.ns[name].addrs[0]+":7443"
		} else {
			addr = freeAddr(t)
		}
		p := startProcIn(t, ns, fmt.Sprintf("server%d", i), filepath.Join(d.root, fmt.Sprintf("server%d.log", i)),
			append([]string{"server", "--data-dir", dir, "--listen", addr, "--log-level", "debug"}, storeArgs...)...)
		d.servers = append(d.servers, p)
		p.waitLog("Fog API: ", 30*time.Second)
		b, err := os.ReadFile(filepath.Join(dir, "client.json"))
		if err != nil {
			t.Fatal(err)
		}
		var cc server.ClientConfig
		if err := json.Unmarshal(b, &cc); err != nil {
			t.Fatal(err)
		}
		d.urls, d.clients = append(d.urls, cc.APIURL), append(d.clients, cc)
	}
	d.f = &fog{t: t, dataDir: d.root, info: d.clients[0], hc: httpClient(t, d.clients[0].CACert), api: apiClient(t, d.clients[0]), stop: func() {}}
	base := addressBase() // 127.0.N.1: eastus takes .1-.60, westus .101
	prefix := strings.TrimSuffix(base, ".1")
	for i, region := range []string{"eastus", "westus"} {
		r := d.f.call("POST", "/fog/v1/joinTokens", map[string]any{"region": region, "expiresIn": "10m"})
		if r.Status != http.StatusCreated {
			t.Fatalf("create join token = %d %s", r.Status, r.Body)
		}
		tok := r.json(t)["token"].(string)
		// eastus has an address per instance; westus one address, with a port per instance.
		addrs := []string{"--address-range", fmt.Sprintf("%s.1-%s.60", prefix, prefix)}
		if i == 1 {
			addrs = []string{"--advertise", prefix + ".101", "--port-range", "6432-6450"}
		}
		var ns *netns
		if lab != nil {
			ns = lab.ns[region]
			addrs = []string{"--address-range", ns.addrs[1] + "-" + ns.addrs[len(ns.addrs)-1]}
		}
		p := startProcIn(t, ns, "agent-"+region, filepath.Join(d.root, "agent-"+region+".log"),
			append([]string{"agent", "--region", region, "--server", strings.Join(d.urls, ","), "--join-token", tok,
				"--data-dir", filepath.Join(d.root, "regions", region), "--log-level", "debug", "--metrics-listen", "127.0.0.1:0"}, addrs...)...)
		d.agents[region] = p
		p.waitLog("Fog agent of "+region, 30*time.Second)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"server0", "server1", "agent-eastus", "agent-westus"} {
				b, _ := os.ReadFile(filepath.Join(d.root, name+".log"))
				t.Logf("%s log (tail):\n%s", name, tail(grepOut(string(b), "level=DEBUG"), 25))
				if dir := os.Getenv("FOG_E2E_KEEP_LOGS"); dir != "" {
					_ = os.MkdirAll(dir, 0o755)
					_ = os.WriteFile(filepath.Join(dir, name+".log"), b, 0o644)
				}
				var auto []string
				for _, l := range strings.Split(string(b), "\n") {
					if strings.Contains(l, "automatic failover") {
						auto = append(auto, l)
					}
				}
				if len(auto) > 0 {
					t.Logf("%s automatic failover lines (last):\n%s", name, tail(strings.Join(auto, "\n"), 5))
				}
			}
		}
	})
	// Agents stop (and stop their instances) before the servers: cleanups run last first.
	t.Cleanup(func() {
		for _, a := range d.agents {
			a.stop()
		}
		cmds := map[int]string{}
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, f := range procs {
			b, _ := os.ReadFile(f)
			var pid int
			fmt.Sscanf(f, "/proc/%d/cmdline", &pid)
			cmds[pid] = string(bytes.ReplaceAll(b, []byte{0}, []byte(" ")))
		}
		if left := leftovers(filepath.Join(d.root, "regions")); len(left) > 0 {
			var what []string
			for _, pid := range left {
				what = append(what, fmt.Sprintf("%d: %s", pid, cmds[pid]))
			}
			t.Errorf("processes still running after the agents stopped: %v", what)
		}
	})
	return d
}

// restartAgent starts a killed agent again on its data directory (no token: it has joined).
func (d *deployment) restartAgent(region string) {
	a := d.agents[region]
	var args []string
	for i := 0; i < len(a.args); i++ {
		if a.args[i] == "--join-token" {
			i++
			continue
		}
		args = append(args, a.args[i])
	}
	a.args = args
	a.start()
}

// leader returns the index of the server that holds the controller's election.
func (d *deployment) leader() int {
	d.t.Helper()
	st, err := store.OpenEtcd(context.Background(), store.EtcdConfig{Endpoints: d.etcd.Endpoints()})
	if err != nil {
		d.t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		kv, err := st.Get(context.Background(), server.LeaderKey)
		if err == nil {
			for i, s := range d.servers {
				if bytes.HasSuffix(kv.Value, []byte(fmt.Sprintf("/%d", s.cmd.Process.Pid))) {
					select {
					case <-s.done:
					default:
						return i
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.t.Fatal("no live server holds the leader key")
	return -1
}

// use points the API client at server i.
func (d *deployment) use(i int) {
	d.f.info, d.f.api = d.clients[i], apiClient(d.t, d.clients[i])
}

// TestSeparateProcesses runs Fog as a user spreads it over machines: etcd with three
// members, two `fog server`, one `fog agent` per region, each a separate process of the real
// binary. An agent killed with SIGKILL while its secondary seeds comes back and the group is
// created; the leader server killed with SIGKILL, the other server drives a planned failover;
// an agent killed during a planned failover comes back and the failover ends; an agent
// killed while idle re-adopts its running instance without restarting it.
func TestSeparateProcesses(t *testing.T) {
	d := startDeployment(t, 2)
	f := d.f
	p := newPair(t, f, "mp")
	// Each agent serves its own metrics.
	b, _ := os.ReadFile(d.agents["westus"].log)
	m := regexp.MustCompile(`msg=metrics url=(\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("the westus agent logged no metrics URL")
	}
	resp, err := http.Get(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `fog_agent_lease_renewal_age_seconds{region="westus"}`) || !strings.Contains(string(body), `fog_gateway_connections_total{region="westus"}`) {
		t.Errorf("agent metrics:\n%s", tail(string(body), 20))
	}

	// Kill -9 the secondary's agent while the group seeds it.
	r := f.call("PUT", groupPath("rg-p", "eastus", p.name), groupBody(p.prim["id"].(string), p.sec["id"].(string), "westus", nil))
	if r.Status != http.StatusCreated && r.Status != http.StatusAccepted {
		t.Fatalf("create group = %d %s", r.Status, r.Body)
	}
	d.agents["westus"].waitLog("seed", 30*time.Second)
	d.agents["westus"].kill9()
	time.Sleep(500 * time.Millisecond)
	d.restartAgent("westus")
	if st := f.wait(r); st["status"] != "Succeeded" {
		t.Fatalf("group creation after its secondary's agent was killed while seeding: %v", st)
	}
	g := p.get(t, "rg-p", "eastus")
	l := props(g)["listeners"].(map[string]any)
	rwl := l["readWrite"].(map[string]any)
	p.rw, p.rwFQDN = net.JoinHostPort(rwl["host"].(string), fmt.Sprint(rwl["port"])), rwl["fullyQualifiedDomainName"].(string)
	wl := props(p.get(t, "rg-s", "westus"))["listeners"].(map[string]any)["readWrite"].(map[string]any)
	westRW := net.JoinHostPort(wl["host"].(string), fmt.Sprint(wl["port"]))
	if westRW == p.rw {
		t.Fatalf("both regions show the read-write listener at %s; each region's gateway should have its own address", westRW)
	}
	// westus's agent has one address: its instance and listeners differ by port.
	secProps := props(p.sec)
	if wl["host"] != secProps["host"] || fmt.Sprint(wl["port"]) == fmt.Sprint(secProps["port"]) || secProps["port"] != 6432.0 {
		t.Errorf("westus instance at %v:%v, listener at %v:%v; want one address, the instance on 6432 and the listener on another port",
			secProps["host"], secProps["port"], wl["host"], wl["port"])
	}
	p.setupTable(t)
	mustExecRW(t, p, "INSERT INTO w (id) VALUES (1)")

	// Kill -9 the leader server; the other one takes over and drives a planned failover.
	lead := d.leader()
	d.servers[lead].kill9()
	other := 1 - lead
	d.use(other)
	start := time.Now()
	r = f.call("POST", groupPath("rg-s", "westus", p.name)+"/failover", nil)
	for r.Status == http.StatusServiceUnavailable && time.Since(start) < 30*time.Second {
		time.Sleep(200 * time.Millisecond)
		r = f.call("POST", groupPath("rg-s", "westus", p.name)+"/failover", nil)
	}
	if r.Status != http.StatusAccepted {
		t.Fatalf("planned failover through the surviving server = %d %s", r.Status, r.Body)
	}
	if st := f.wait(r); st["status"] != "Succeeded" {
		t.Fatalf("planned failover after the leader was killed: %v", st)
	}
	t.Logf("leader killed to planned failover done through the other server: %s", time.Since(start).Round(time.Millisecond))
	if rg, _ := p.sideOf(t, "Primary"); rg != "rg-s" {
		t.Fatalf("after the failover the primary is %s, want rg-s", rg)
	}
	p.waitState(t, "CATCH_UP", 60*time.Second)
	// Through the west listener now, and the east one still routes to the new primary.
	p.rw = westRW
	mustExecRW(t, p, "INSERT INTO w (id) VALUES (2)")

	// Kill -9 the new primary's agent during a planned failover back; it comes back and the
	// failover ends with the group consistent.
	r = f.call("POST", groupPath("rg-p", "eastus", p.name)+"/failover", nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("planned failover back = %d %s", r.Status, r.Body)
	}
	time.Sleep(150 * time.Millisecond)
	d.agents["westus"].kill9()
	time.Sleep(time.Second)
	d.restartAgent("westus")
	st := f.wait(r)
	t.Logf("planned failover with the old primary's agent killed mid-way: %v", st["status"])
	if st["status"] != "Succeeded" && st["status"] != "Failed" {
		t.Fatalf("planned failover ended %v", st)
	}
	p.waitState(t, "CATCH_UP", 90*time.Second)
	rg, _ := p.sideOf(t, "Primary")
	if (st["status"] == "Succeeded") != (rg == "rg-p") {
		t.Errorf("failover %v but the primary is %s", st["status"], rg)
	}
	if rg == "rg-p" {
		p.rw = net.JoinHostPort(rwl["host"].(string), fmt.Sprint(rwl["port"]))
	}
	mustExecRW(t, p, "INSERT INTO w (id) VALUES (3)")
	got := p.present(t)
	for _, id := range []int64{1, 2, 3} {
		if !got[id] {
			t.Errorf("row %d is missing after the kills", id)
		}
	}

	// Kill -9 the secondary's agent while idle: its instance keeps running, and the agent
	// adopts it again rather than restarting it.
	secRegion, secInst := "westus", p.sec
	if rg == "rg-s" {
		secRegion, secInst = "eastus", p.prim
	}
	pm := postmasterOf(t, f, secInst)
	d.agents[secRegion].kill9()
	time.Sleep(time.Second)
	if !alive(pm) {
		t.Fatal("the secondary's postgres died with its agent")
	}
	d.restartAgent(secRegion)
	d.agents[secRegion].waitLog("Fog agent of "+secRegion, 30*time.Second)
	mustExecRW(t, p, "INSERT INTO w (id) VALUES (4)")
	p.waitState(t, "CATCH_UP", 30*time.Second)
	if got := postmasterOf(t, f, secInst); got != pm {
		t.Errorf("the restarted agent restarted its secondary (postmaster %d, was %d)", got, pm)
	}
}
