package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/server"
	"github.com/fogdb/fog/internal/store"
	"github.com/fogdb/fog/internal/store/storetest"
)

// proc is a fog process (server or agent) of the distributed deployment.
type proc struct {
	bin, log string
	args     []string
	cmd      *exec.Cmd
	done     chan struct{}
}

func (p *proc) start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return nil
}

func (p *proc) kill9() { _ = p.cmd.Process.Signal(syscall.SIGKILL); <-p.done }

func (p *proc) stop() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.kill9()
	}
}

func (p *proc) waitLog(s string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(p.log); bytes.Contains(b, []byte(s)) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited; see %s", p.args[0], p.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("no %q in %s within %s", s, p.log, limit)
}

// cluster is Fog spread over processes as on several machines: three embedded etcd members,
// two `fog server`, one `fog agent` per region.
type cluster struct {
	dir     string
	etcd    *storetest.EtcdCluster
	servers []*proc
	clients []server.ClientConfig
	agents  []*proc
	f       *fog
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startCluster(ctx context.Context, bin, prefix string) (_ *cluster, err error) {
	dir, err := os.MkdirTemp("", "fog-bench-cluster-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	if c.etcd, err = storetest.NewEtcd(filepath.Join(dir, "etcd"), 3); err != nil {
		return nil, err
	}
	eps := strings.Join(c.etcd.Endpoints(), ",")
	for i := range 2 {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		sdir := filepath.Join(dir, fmt.Sprintf("server%d", i))
		p := &proc{bin: bin, log: filepath.Join(dir, fmt.Sprintf("server%d.log", i)),
			args: []string{"server", "--data-dir", sdir, "--listen", addr, "--etcd-endpoints", eps}}
		if err := p.start(); err != nil {
			return nil, err
		}
		c.servers = append(c.servers, p)
		if err := p.waitLog("Fog API: ", 30*time.Second); err != nil {
			return nil, err
		}
		cc, err := fogclient.LoadConfig(filepath.Join(sdir, "client.json"))
		if err != nil {
			return nil, err
		}
		c.clients = append(c.clients, cc)
	}
	if c.f, err = newFogClient(dir, c.clients[0]); err != nil {
		return nil, err
	}
	urls := c.clients[0].APIURL + "," + c.clients[1].APIURL
	for i, region := range []string{"eastus", "westus"} {
		tok, err := c.f.api.CreateJoinToken(ctx, fogclient.JoinTokenRequest{Region: region})
		if err != nil {
			return nil, fmt.Errorf("join token: %w", err)
		}
		rng := fmt.Sprintf("%s.%d-%s.%d", prefix, 1+100*i, prefix, 50+100*i)
		p := &proc{bin: bin, log: filepath.Join(dir, "agent-"+region+".log"), args: []string{"agent", "--region", region,
			"--server", urls, "--join-token", tok.Token, "--data-dir", filepath.Join(dir, "regions", region), "--address-range", rng}}
		if err := p.start(); err != nil {
			return nil, err
		}
		c.agents = append(c.agents, p)
		if err := p.waitLog("Fog agent of "+region, 30*time.Second); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) stop() {
	if c.f != nil {
		c.f.api.CloseIdleConnections()
	}
	for _, a := range c.agents {
		a.stop()
	}
	for _, s := range c.servers {
		s.stop()
	}
	if c.etcd != nil {
		c.etcd.Close()
	}
	if os.Getenv("FOG_BENCH_KEEP") == "" {
		os.RemoveAll(c.dir)
	} else {
		fmt.Println("  kept", c.dir)
	}
}

// leader is the index of the server holding the controller's election.
func (c *cluster) leader(ctx context.Context) (int, error) {
	st, err := store.OpenEtcd(ctx, store.EtcdConfig{Endpoints: c.etcd.Endpoints()})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	kv, err := st.Get(ctx, server.LeaderKey)
	if err != nil {
		return 0, err
	}
	for i, s := range c.servers {
		if bytes.HasSuffix(kv.Value, fmt.Appendf(nil, "/%d", s.cmd.Process.Pid)) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("leader %s is none of the servers", kv.Value)
}

// use points the client at server i.
func (c *cluster) use(i int) {
	c.f.api.CloseIdleConnections()
	c.f.client = c.clients[i]
}

// distributedScenario measures, with the control plane and the regions in separate
// processes on a three-member etcd: planned and forced failovers against the by-hand
// baselines, and the control plane's own failover (kill -9 of the leader server until the
// next planned failover has been accepted by the other server and driven to the end).
func distributedScenario(ctx context.Context, o options) (*result, error) {
	res := newResult("separate processes: 3 etcd members, 2 fog server, 1 fog agent per region")
	bin, err := buildFog(ctx)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(filepath.Dir(bin))
	c, err := startCluster(ctx, bin, "127.0.220")
	if err != nil {
		return nil, err
	}
	defer c.stop()
	f := c.f
	g, err := f.setupGroup(ctx)
	if err != nil {
		return nil, err
	}
	raw, err := newRawPair(ctx, "127.0.221.1,127.0.221.2")
	if err != nil {
		return nil, err
	}
	defer raw.close()
	if err := createTable(ctx, raw.ca, raw.addr(0)); err != nil {
		return nil, err
	}
	for run := range o.runs {
		gap, op, lost, err := g.measuredFailover(ctx, res, run, nil)
		if err != nil {
			return nil, err
		}
		rawGap, _, _, err := raw.measuredSwitchover(ctx, run, nil)
		if err != nil {
			return nil, err
		}
		res.add("planned_unavailable_ms", ms(gap))
		res.add("planned_operation_ms", ms(op))
		res.add("planned_lost_commits", float64(lost))
		res.add("raw_switchover_unavailable_ms", ms(rawGap))
		res.add("ratio_planned_to_raw", ms(gap)/ms(rawGap))

		// The control plane's failover: kill -9 the leader, then a planned failover through
		// the other server, retried until it is accepted. The same failover with the leader
		// alive is measured just above (planned_operation_ms).
		lead, err := c.leader(ctx)
		if err != nil {
			return nil, err
		}
		c.servers[lead].kill9()
		killed := time.Now()
		c.use(1 - lead)
		sec := g.secondarySide()
		var r response
		for {
			r, err = f.call(ctx, "POST", groupPath(sec[0], sec[1], g.name)+"/failover", nil)
			if err == nil && r.status == http.StatusAccepted {
				break
			}
			if time.Since(killed) > time.Minute {
				return nil, fmt.Errorf("no server accepted a failover within a minute of the leader's kill: %v %d %s", err, r.status, r.body)
			}
			time.Sleep(10 * time.Millisecond)
		}
		accepted := time.Since(killed)
		if _, err := f.wait(ctx, r); err != nil {
			return nil, fmt.Errorf("failover after the leader's kill: %w", err)
		}
		driven := time.Since(killed)
		g.primSide = sec
		if err := g.waitCatchUp(ctx); err != nil {
			return nil, err
		}
		res.add("leader_kill_to_accepted_ms", ms(accepted))
		res.add("leader_kill_to_failover_done_ms", ms(driven))
		if err := c.servers[lead].start(); err != nil {
			return nil, err
		}
		if err := c.servers[lead].waitLog("Fog API: ", 30*time.Second); err != nil {
			return nil, err
		}

		// Forced failover after kill -9 of the primary's postmaster.
		hosts := map[string]string{"rg-p": g.prim.host, "rg-s": g.sec.host}
		w, stop := startWriter(ctx, f.ca, func() string { return g.rw }, 5*time.Millisecond, int64(run)*1e7+9e6)
		time.Sleep(300 * time.Millisecond)
		pid, err := postmasterFor(c.dir, hosts[g.primSide[0]])
		if err != nil {
			stop()
			return nil, err
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		fsec := g.secondarySide()
		t0 := time.Now()
		r, err = f.call(ctx, "POST", groupPath(fsec[0], fsec[1], g.name)+"/forceFailoverAllowDataLoss", nil)
		if err != nil {
			stop()
			return nil, err
		}
		first, ferr := w.waitFirstAfter(ctx, t0, hosts[fsec[0]], 30*time.Second)
		ended, err := g.endForced(ctx, res, r, fsec, stop, ferr)
		if err != nil {
			return nil, err
		}
		rfirst, _, err := raw.measuredPromote(ctx, run)
		if err != nil {
			return nil, err
		}
		res.add("forced_first_commit_ms", ms(first))
		res.add("forced_operation_ms", ms(ended.Sub(t0)))
		res.add("raw_promote_first_commit_ms", ms(rfirst))
		res.add("ratio_forced_to_raw", ms(first)/ms(rfirst))
		fmt.Printf("  distributed run %d: planned %s (raw %s), leader kill to accepted %s, to failover done %s; forced first commit %s (raw %s)\n",
			run+1, gap.Round(time.Millisecond), rawGap.Round(time.Millisecond), accepted.Round(time.Millisecond), driven.Round(time.Millisecond),
			first.Round(time.Millisecond), rfirst.Round(time.Millisecond))
	}
	fmt.Print(res.finish("planned_unavailable_ms", "raw_switchover_unavailable_ms", "ratio_planned_to_raw", "planned_operation_ms", "planned_lost_commits",
		"leader_kill_to_accepted_ms", "leader_kill_to_failover_done_ms",
		"forced_first_commit_ms", "raw_promote_first_commit_ms", "ratio_forced_to_raw", "forced_operation_ms"))
	return res, nil
}
