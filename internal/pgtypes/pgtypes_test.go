package pgtypes

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestLSN(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want LSN
		ok   bool
	}{
		{"0/0", 0, true},
		{"16/B374D848", 0x16B374D848, true},
		{"FFFFFFFF/FFFFFFFF", 1<<64 - 1, true},
		{"0/1", 1, true},
		{"", 0, false},
		{"16B374D848", 0, false},
		{"1/2/3", 0, false},
		{"100000000/0", 0, false},
		{"x/0", 0, false},
	} {
		got, err := ParseLSN(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseLSN(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != strings.ToUpper(tc.in) {
			t.Errorf("LSN(%q).String() = %q", tc.in, got.String())
		}
	}
}

func TestSlotName(t *testing.T) {
	if got := SlotName("3f31c226-e7a1-4b6e-9d2a-000000000001"); got != "fog_3f31c226e7a14b6e9d2a000000000001" {
		t.Errorf("SlotName = %q", got)
	}
}

func TestSCRAMVerifier(t *testing.T) {
	a, b := SCRAMVerifier("Str0ng-Password-123!"), SCRAMVerifier("Str0ng-Password-123!")
	if a == b {
		t.Error("two verifiers of one password share a salt")
	}
	for _, v := range []string{a, SCRAMVerifier("pässwörd")} {
		parts := strings.Split(v, "$")
		if len(parts) != 3 || parts[0] != "SCRAM-SHA-256" || !strings.HasPrefix(parts[1], "4096:") || strings.Count(parts[2], ":") != 1 {
			t.Errorf("SCRAMVerifier = %q, want SCRAM-SHA-256$4096:salt$stored:server", v)
		}
	}
}

func TestProbe(t *testing.T) {
	serve := func(answer []byte) string {
		t.Helper()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				buf := make([]byte, 8)
				_, _ = c.Read(buf)
				_, _ = c.Write(answer)
				c.Close()
			}
		}()
		return l.Addr().String()
	}
	ctx := context.Background()
	if err := Probe(ctx, serve([]byte("S")), time.Second); err != nil {
		t.Errorf("Probe of a TLS server = %v", err)
	}
	if err := Probe(ctx, serve([]byte("N")), time.Second); err == nil {
		t.Error("Probe of a server without TLS succeeded")
	}
	if err := Probe(ctx, serve(nil), time.Second); err == nil {
		t.Error("Probe of a server that closes succeeded")
	}
}
