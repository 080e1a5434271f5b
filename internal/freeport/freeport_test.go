package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPortsAreDistinctFreeAndOutsideTheEphemeralRange binds every port it is given, and checks
// each lies in the range picked from, which does not meet the kernel's ephemeral range.
func TestPortsAreDistinctFreeAndOutsideTheEphemeralRange(t *testing.T) {
	lo, hi := candidates()
	ports, err := Ports(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d given twice in %v", p, ports)
		}
		seen[p] = true
		if p < lo || p > hi {
			t.Fatalf("port %d outside %d-%d", p, lo, hi)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d given as free: %v", p, err)
		}
		defer l.Close()
	}
	// What the kernel hands out for port 0 is ephemeral, and never in the picked range
	// (unless the whole space is ephemeral).
	if lo > 1024 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if p := l.Addr().(*net.TCPAddr).Port; p >= lo && p <= hi {
			t.Fatalf("kernel's ephemeral port %d lies in the picked range %d-%d", p, lo, hi)
		}
	}
}
