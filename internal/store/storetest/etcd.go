package storetest

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/fogdb/fog/internal/freeport"
)

// EtcdCluster is a real etcd cluster of embedded members in the test process, on loopback;
// members can be stopped and started again on their data.
type EtcdCluster struct {
	cfgs    []*embed.Config
	members []*embed.Etcd
}

// StartEtcd starts an n-member cluster that runs until the test ends.
func StartEtcd(t *testing.T, n int) *EtcdCluster {
	t.Helper()
	c, err := NewEtcd(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// NewEtcd starts an n-member cluster with its data under dir (benchmarks use it outside a
// test); Close stops it. A port taken by another process between its pick and etcd's bind
// (another test's pick of the same port) makes it start again on new ports.
func NewEtcd(dir string, n int) (*EtcdCluster, error) {
	var err error
	for range 5 {
		var c *EtcdCluster
		if c, err = newEtcd(dir, n); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			return c, err
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			return nil, rerr
		}
	}
	return nil, err
}

func newEtcd(dir string, n int) (*EtcdCluster, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &EtcdCluster{members: make([]*embed.Etcd, n)}
	var initial []string
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		client, err := freeURL()
		if err != nil {
			return nil, err
		}
		peer, err := freeURL()
		if err != nil {
			return nil, err
		}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.LogLevel = "error"
		cfg.LogOutputs = []string{filepath.Join(dir, cfg.Name+".log")}
		initial = append(initial, cfg.Name+"="+peer.String())
		c.cfgs = append(c.cfgs, cfg)
	}
	for _, cfg := range c.cfgs {
		cfg.InitialCluster = strings.Join(initial, ",")
	}
	// Members of a new cluster wait for each other: start them together.
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- c.Start(i) }()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		c.Close()
		return nil, first
	}
	return c, nil
}

// Close stops every member.
func (c *EtcdCluster) Close() {
	for i := range c.members {
		c.Stop(i)
	}
}

// Start starts member i (again).
func (c *EtcdCluster) Start(i int) error {
	e, err := embed.StartEtcd(c.cfgs[i])
	if err != nil {
		return err
	}
	c.members[i] = e
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd member %d did not become ready", i)
	}
}

// Stop stops member i.
func (c *EtcdCluster) Stop(i int) {
	if c.members[i] != nil {
		c.members[i].Close()
		c.members[i] = nil
	}
}

// Endpoints are the client URLs of every member.
func (c *EtcdCluster) Endpoints() []string {
	var out []string
	for _, cfg := range c.cfgs {
		out = append(out, cfg.ListenClientUrls[0].String())
	}
	return out
}

func freeURL() (url.URL, error) {
	a, err := freeport.Addr()
	if err != nil {
		return url.URL{}, err
	}
	return url.URL{Scheme: "http", Host: a}, nil
}
