package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// netlab is a set of network namespaces joined by a bridge in the test's own namespace: the
// control plane in one, each region in its own, and the test (clients, checkers) on the
// bridge. A link between two namespaces is cut with blackhole routes on both sides, so
// packets vanish as on a real partition while every other path stays up.
type netlab struct {
	t      *testing.T
	prefix string // namespace name prefix
	bridge string
	net    string // first three octets, e.g. 10.77.3
	ns     map[string]*netns
}

type netns struct {
	name  string
	addrs []string // the first is the namespace's own address
}

// newNetlab makes the bridge; it skips the test where namespaces cannot be made (not root).
func newNetlab(t *testing.T, id int) *netlab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("partition tests need root to create network namespaces (ip netns)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("partition tests need the ip command (iproute2)")
	}
	l := &netlab{t: t, prefix: fmt.Sprintf("fogt%d", id), bridge: fmt.Sprintf("fogbr%d", id),
		net: fmt.Sprintf("10.77.%d", id), ns: map[string]*netns{}}
	l.cleanupStale()
	if out, err := exec.Command("ip", "link", "add", l.bridge, "type", "bridge").CombinedOutput(); err != nil {
		t.Skipf("cannot create a bridge here (%v: %s)", err, out)
	}
	t.Cleanup(l.cleanupStale)
	l.run("ip", "addr", "add", l.net+".1/24", "dev", l.bridge)
	l.run("ip", "link", "set", l.bridge, "up")
	return l
}

func (l *netlab) cleanupStale() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], l.prefix+"-") {
			_ = exec.Command("ip", "netns", "pids", f[0]).Run()
			pids, _ := exec.Command("ip", "netns", "pids", f[0]).Output()
			for _, p := range strings.Fields(string(pids)) {
				_ = exec.Command("kill", "-9", p).Run()
			}
			_ = exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
	out, _ = exec.Command("ip", "-o", "link").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if strings.HasPrefix(name, l.prefix) {
				_ = exec.Command("ip", "link", "del", name).Run()
			}
		}
	}
	_ = exec.Command("ip", "link", "del", l.bridge).Run()
}

func (l *netlab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// add makes namespace name with addresses .first to .first+n-1 on its link to the bridge.
func (l *netlab) add(name string, first, n int) *netns {
	l.t.Helper()
	ns := &netns{name: l.prefix + "-" + name}
	veth, peer := fmt.Sprintf("%sv%d", l.prefix, len(l.ns)), fmt.Sprintf("%sv%dp", l.prefix, len(l.ns))
	l.run("ip", "netns", "add", ns.name)
	l.run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
	l.run("ip", "link", "set", veth, "master", l.bridge)
	l.run("ip", "link", "set", veth, "up")
	l.run("ip", "link", "set", peer, "netns", ns.name)
	l.run("ip", "-n", ns.name, "link", "set", "lo", "up")
	l.run("ip", "-n", ns.name, "link", "set", peer, "name", "eth0")
	l.run("ip", "-n", ns.name, "link", "set", "eth0", "up")
	for i := range n {
		a := fmt.Sprintf("%s.%d", l.net, first+i)
		l.run("ip", "-n", ns.name, "addr", "add", a+"/24", "dev", "eth0")
		ns.addrs = append(ns.addrs, a)
	}
	l.ns[name] = ns
	return ns
}

// down takes the namespace off the network entirely; up brings it back.
func (l *netlab) down(name string) { l.run("ip", "-n", l.ns[name].name, "link", "set", "eth0", "down") }
func (l *netlab) up(name string)   { l.run("ip", "-n", l.ns[name].name, "link", "set", "eth0", "up") }

// cut makes a and b unreachable from each other (every address of each); heal undoes it.
func (l *netlab) cut(a, b string)  { l.routes("add", a, b) }
func (l *netlab) heal(a, b string) { l.routes("del", a, b) }

func (l *netlab) routes(op, a, b string) {
	l.t.Helper()
	for _, pair := range [][2]*netns{{l.ns[a], l.ns[b]}, {l.ns[b], l.ns[a]}} {
		for _, addr := range pair[1].addrs {
			l.run("ip", "-n", pair[0].name, "route", op, "blackhole", addr+"/32")
		}
	}
}
