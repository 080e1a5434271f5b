package regional

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/gateway"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// fakeRenewer stands for the agent certificate's renewal: it runs until ctx ends.
type fakeRenewer struct{ running, ended atomic.Bool }

func (f *fakeRenewer) KeepRenewed(ctx context.Context) {
	f.running.Store(true)
	<-ctx.Done()
	f.ended.Store(true)
}

func metricsServer(t *testing.T) (*http.Server, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up 1\n") })
	return &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}, ln
}

func scrape(ln net.Listener) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// TestRunLinked: the renewal and the metrics server run while the region does, and every
// one of them has ended when runLinked returns, whether ctx ended or the region stopped by
// itself (with an error or without).
func TestRunLinked(t *testing.T) {
	errStopped := errors.New("the region stopped")
	for _, c := range []struct {
		name string
		// stop ends the run: by ctx (cancel) or by itself (its result).
		byCtx bool
		err   error
	}{
		{name: "ctx ends", byCtx: true},
		{name: "the region fails", err: errStopped},
		{name: "the region returns", err: nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			certs := &fakeRenewer{}
			srv, ln := metricsServer(t)
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- runLinked(ctx, certs, srv, ln, quiet, func(ctx context.Context) error {
					select {
					case <-ctx.Done():
						return nil
					case <-stop:
						return c.err
					}
				})
			}()
			deadline := time.Now().Add(5 * time.Second)
			for scrape(ln) != nil || !certs.running.Load() {
				if time.Now().After(deadline) {
					t.Fatal("the metrics server or the renewal did not start")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if c.byCtx {
				cancel()
			} else {
				close(stop)
			}
			select {
			case err := <-done:
				if !errors.Is(err, c.err) {
					t.Errorf("runLinked = %v, want %v", err, c.err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("runLinked did not return")
			}
			if !certs.ended.Load() {
				t.Error("the renewal still runs")
			}
			if err := scrape(ln); err == nil {
				t.Error("the metrics server still answers")
			}
		})
	}
}

// TestRunLinkedWithoutMetrics: without a metrics server only the renewal runs beside the
// region.
func TestRunLinkedWithoutMetrics(t *testing.T) {
	certs := &fakeRenewer{}
	err := runLinked(context.Background(), certs, nil, nil, quiet, func(context.Context) error {
		for !certs.running.Load() {
			time.Sleep(time.Millisecond)
		}
		return nil
	})
	if err != nil || !certs.ended.Load() {
		t.Errorf("runLinked = %v, renewal ended %v; want nil, true", err, certs.ended.Load())
	}
}

// TestRunRemoteNotJoined: an agent that has not joined and was given no token stops with
// agentapi's TokenNeededError before it starts anything, and closes the metrics listener.
func TestRunRemoteNotJoined(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := RemoteConfig{Config: Config{Agent: agent.Defaults(), Gateway: gateway.Defaults()},
		Servers: []string{"https://127.0.0.1:1"}, DataDir: t.TempDir(), MetricsListener: ln}
	cfg.Agent.Region = "westus"
	var need *agentapi.TokenNeededError
	if err := RunRemote(context.Background(), cfg, quiet); !errors.As(err, &need) || need.Region != "westus" {
		t.Errorf("RunRemote = %v, want a TokenNeededError of westus", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the metrics listener is open: Accept = %v", err)
	}
}
