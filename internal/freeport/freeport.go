// Package freeport picks loopback TCP ports for servers that a test or benchmark starts and
// that bind the port themselves a moment later (etcd, Azurite, fog, PostgreSQL).
//
// A port the kernel hands out for "127.0.0.1:0" comes from the ephemeral range, the same range
// the source ports of outgoing connections come from: between the pick and the server's bind,
// any connection of any process may take it (`bind: address already in use`). The ports here
// come from below that range, where the kernel never places a connection.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Ports returns n distinct ports that are free on 127.0.0.1 now and lie outside the kernel's
// ephemeral range. All n are held open until all are picked, so none comes back twice.
func Ports(n int) ([]int, error) { return PortsOn("127.0.0.1", n) }

// PortOn returns one port free on host (an address of this machine), as Ports picks them.
func PortOn(host string) (int, error) {
	p, err := PortsOn(host, 1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

// PortsOn is Ports for the address host.
func PortsOn(host string, n int) ([]int, error) {
	lo, hi := candidates()
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	span := hi - lo + 1
	start := rand.IntN(span)
	for i := 0; i < span && len(ports) < n; i++ {
		p := lo + (start+i)%span
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		held = append(held, l)
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("freeport: only %d of %d ports free in %d-%d on %s", len(ports), n, lo, hi, host)
	}
	return ports, nil
}

// Port returns one port as Ports does.
func Port() (int, error) {
	p, err := Ports(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

// Addr returns "127.0.0.1:<port>" for a port as Ports picks it.
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// candidates is the range picked from: below the ephemeral range when there is room there
// (Linux's default range is 32768-60999, which leaves 16384-32767), above it otherwise.
func candidates() (lo, hi int) {
	eLo, eHi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if a, err1 := strconv.Atoi(f[0]); err1 == nil {
				if b, err2 := strconv.Atoi(f[1]); err2 == nil {
					eLo, eHi = a, b
				}
			}
		}
	}
	switch {
	case eLo >= 12000:
		// Ports below 10000 are where services listen by convention (PostgreSQL's 5432,
		// the tests' own fixed ports): stay above them.
		return max(10000, eLo/2), eLo - 1
	case eHi <= 64535:
		return eHi + 1, 65535
	default:
		// The whole space is ephemeral: nothing is safe, the kernel's pick is as good.
		return 1024, 65535
	}
}
