package agentapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/store"
)

// Credentials are what an agent keeps after joining, in its data directory.
type Credentials struct {
	Region  string
	CertPEM []byte
	KeyPEM  []byte
	CAPEM   []byte
	// Dir is where they are kept: a renewal saves the new certificate and key there.
	Dir string
}

const (
	certFile = "agent.crt"
	keyFile  = "agent.key"
	caFile   = "ca.crt"
)

// LoadCredentials reads the credentials a join saved in dir; os.ErrNotExist when the agent
// has not joined yet.
func LoadCredentials(dir string) (*Credentials, error) {
	c := Credentials{Dir: dir}
	var err error
	if c.CertPEM, err = os.ReadFile(filepath.Join(dir, certFile)); err != nil {
		return nil, err
	}
	if c.KeyPEM, err = os.ReadFile(filepath.Join(dir, keyFile)); err != nil {
		return nil, err
	}
	if c.CAPEM, err = os.ReadFile(filepath.Join(dir, caFile)); err != nil {
		return nil, err
	}
	if _, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
		// A renewal writes the key and then the certificate: a crash between the two renames
		// leaves the new key beside the old certificate, and the new certificate in its
		// temporary file. Finish the renewal's save.
		tmp := filepath.Join(dir, certFile+".tmp")
		next, rerr := os.ReadFile(tmp)
		if rerr != nil {
			return nil, fmt.Errorf("%s and %s do not match: %w", filepath.Join(dir, certFile), filepath.Join(dir, keyFile), err)
		}
		if _, err := tls.X509KeyPair(next, c.KeyPEM); err != nil {
			return nil, fmt.Errorf("%s and %s do not match: %w", filepath.Join(dir, certFile), filepath.Join(dir, keyFile), err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, certFile)); err != nil {
			return nil, fmt.Errorf("finish saving the renewed certificate: %w", err)
		}
		c.CertPEM = next
	}
	cert, err := parseCert(c.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, certFile), err)
	}
	c.Region, _ = strings.CutPrefix(cert.Subject.CommonName, CommonNamePrefix)
	return &c, nil
}

// save writes the credentials to dir. Each file is written aside, synced and renamed over
// the old one, key before certificate (LoadCredentials finishes a save a crash cut short).
func (c *Credentials) save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files := []struct {
		name string
		b    []byte
		mode os.FileMode
	}{{keyFile, c.KeyPEM, 0o600}, {caFile, c.CAPEM, 0o644}, {certFile, c.CertPEM, 0o644}}
	for _, f := range files {
		if err := writeSynced(filepath.Join(dir, f.name+".tmp"), f.b, f.mode); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := os.Rename(filepath.Join(dir, f.name+".tmp"), filepath.Join(dir, f.name)); err != nil {
			return err
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func writeSynced(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Join exchanges a one-time join token for a client certificate: it makes a key and a
// certificate request, verifies the server's CA against the pin the token carries, and
// saves key, certificate and CA in dir. region must be the token's.
func Join(ctx context.Context, servers []string, token, region, dir string) (*Credentials, error) {
	_, pin, err := ParseJoinToken(token)
	if err != nil {
		return nil, err
	}
	csr, key, err := devca.NewRequest(CommonNamePrefix+region, nil, nil)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, srv := range servers {
		creds, err := joinOne(ctx, srv, token, pin, csr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", srv, err))
			var te tokenError
			if errors.As(err, &te) {
				break
			}
			continue
		}
		if creds.Region != region {
			return nil, fmt.Errorf("the join token is for region %s, not %s", creds.Region, region)
		}
		creds.KeyPEM, creds.Dir = key, dir
		if err := creds.save(dir); err != nil {
			return nil, fmt.Errorf("save credentials: %w", err)
		}
		return creds, nil
	}
	return nil, fmt.Errorf("join: %w", errors.Join(errs...))
}

type tokenError struct{ msg string }

func (e tokenError) Error() string { return e.msg }

func joinOne(ctx context.Context, server, token, pin string, csr []byte) (*Credentials, error) {
	// The CA is not known yet: the first connection takes any certificate, and fetchCA
	// checks the CA it answers against the pin and the server's certificate against the CA.
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 15 * time.Second}
	defer hc.CloseIdleConnections()
	// The server sends only its leaf; fetch the CA through the pinned connection check.
	caPEM, err := fetchCA(ctx, hc, server, pin)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tc2 := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	hc2 := &http.Client{Transport: &http.Transport{TLSClientConfig: tc2}, Timeout: 15 * time.Second}
	defer hc2.CloseIdleConnections()
	body, _ := json.Marshal(keyReq{Token: token, CSR: string(csr)})
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(server, "/")+Path+"join", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := hc2.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		_ = json.Unmarshal(b, &e)
		if resp.StatusCode == http.StatusUnauthorized {
			return nil, tokenError{e.Message}
		}
		return nil, fmt.Errorf("%s: %s", resp.Status, e.Message)
	}
	var out map[string]string
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return &Credentials{Region: out["region"], CertPEM: []byte(out["cert"]), CAPEM: caPEM}, nil
}

// fetchCA reads the CA certificate from the server and checks it against the pin.
func fetchCA(ctx context.Context, hc *http.Client, server, pin string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(server, "/")+Path+"ca", nil)
	if err != nil {
		return nil, err
	}
	var leaf *x509.Certificate
	hc.Transport.(*http.Transport).TLSClientConfig.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("the server sent no certificate")
		}
		c, err := x509.ParseCertificate(raw[0])
		leaf = c
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	caPEM, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if p, err := CAPin(caPEM); err != nil || p != pin {
		return nil, errors.New("the server's CA does not match the pin in the join token: check the --server URL and the token")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	if leaf == nil {
		return nil, errors.New("the server sent no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		return nil, fmt.Errorf("the server's certificate is not signed by the pinned CA: %w", err)
	}
	return caPEM, nil
}

// Client is an agent's link to the servers: a store.Store scoped to its region and an
// issuer of server certificates, over mutual TLS. It talks to one server at a time and moves
// to the next on a connection error or a server that cannot reach the store. It renews its
// own certificate (KeepRenewed) and then moves every connection to the new one.
type Client struct {
	servers []string
	region  string
	creds   Credentials
	pool    *x509.CertPool
	conns   atomic.Pointer[conns]
	cur     atomic.Int32
	log     *slog.Logger
	// HeartbeatTimeout is how long a watch stream may stay silent before the client drops
	// it and connects again.
	HeartbeatTimeout time.Duration

	renewMu   sync.Mutex // one renewal at a time
	closeOnce sync.Once
	closed    chan struct{}
}

// conns are the client's connections with one certificate. A renewal replaces them whole:
// a connection's client certificate is the one of its handshake, so a kept-alive connection
// of the old transport would present the old certificate for as long as it lives.
type conns struct {
	leaf    *x509.Certificate
	hc      *http.Client
	watchHC *http.Client
	// replaced is closed when newer conns replace these: open watch streams reconnect.
	replaced chan struct{}
}

var _ store.Store = (*Client)(nil)

// NewClient returns a client for the servers (HTTPS URLs) with the joined credentials.
func NewClient(servers []string, creds *Credentials, log *slog.Logger) (*Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(creds.CAPEM) {
		return nil, errors.New("the saved CA is not PEM")
	}
	c := &Client{servers: servers, region: creds.Region, creds: *creds, pool: pool, log: log,
		HeartbeatTimeout: 7 * time.Second, closed: make(chan struct{})}
	cs, err := c.newConns(creds.CertPEM, creds.KeyPEM)
	if err != nil {
		return nil, err
	}
	c.conns.Store(cs)
	return c, nil
}

func (c *Client) newConns(certPEM, keyPEM []byte) (*conns, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("agent certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("agent certificate: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.pool, Certificates: []tls.Certificate{pair}}
	dial := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 5 * time.Second}
	tr := &http.Transport{TLSClientConfig: tc, DialContext: dial.DialContext, TLSHandshakeTimeout: 3 * time.Second,
		MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	wtr := tr.Clone()
	return &conns{leaf: leaf, hc: &http.Client{Transport: tr}, watchHC: &http.Client{Transport: wtr}, replaced: make(chan struct{})}, nil
}

func (cs *conns) closeIdle() {
	cs.hc.CloseIdleConnections()
	cs.watchHC.CloseIdleConnections()
}

// Region is the region the client's certificate names.
func (c *Client) Region() string { return c.region }

// Certificate is the client certificate in use.
func (c *Client) Certificate() *x509.Certificate { return c.conns.Load().leaf }

// Close ends the client's watches and idle connections.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.conns.Load().closeIdle()
	})
	return nil
}

// Renew has the server sign a new client certificate for a key made here, authenticated by
// the current certificate; saves both where the credentials are kept and moves every
// connection to them. The server refuses the old certificate once its grace has passed.
func (c *Client) Renew(ctx context.Context) error {
	c.renewMu.Lock()
	defer c.renewMu.Unlock()
	csr, key, err := devca.NewRequest(CommonNamePrefix+c.region, nil, nil)
	if err != nil {
		return err
	}
	var out map[string]string
	if err := c.call(ctx, "renew", keyReq{CSR: string(csr)}, &out); err != nil {
		return fmt.Errorf("renew the agent certificate: %w", err)
	}
	certPEM := []byte(out["cert"])
	next, err := c.newConns(certPEM, key)
	if err != nil {
		return fmt.Errorf("renew the agent certificate: %w", err)
	}
	if next.leaf.Subject.CommonName != CommonNamePrefix+c.region {
		return fmt.Errorf("renew the agent certificate: the server signed %q, not %q", next.leaf.Subject.CommonName, CommonNamePrefix+c.region)
	}
	// The new certificate is used at once, even if it cannot be saved: the old one will be
	// refused soon. A save that failed makes KeepRenewed try again, with the new one.
	old := c.conns.Swap(next)
	close(old.replaced)
	old.closeIdle()
	c.creds.CertPEM, c.creds.KeyPEM = certPEM, key
	c.log.Info("agent certificate renewed", "serial", SerialHex(next.leaf.SerialNumber), "expires", next.leaf.NotAfter,
		"replaces", SerialHex(old.leaf.SerialNumber))
	if c.creds.Dir != "" {
		if err := c.creds.save(c.creds.Dir); err != nil {
			return fmt.Errorf("save the renewed agent certificate in %s: %w", c.creds.Dir, err)
		}
	}
	return nil
}

// RenewAt is when a certificate is renewed: when two thirds of its lifetime have passed,
// which leaves a third of it to retry in while the servers cannot be reached.
func RenewAt(cert *x509.Certificate) time.Time {
	return cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) * 2 / 3)
}

// KeepRenewed renews the client certificate at RenewAt, and again after a failure, until
// ctx ends.
func (c *Client) KeepRenewed(ctx context.Context) {
	var backoff time.Duration
	for {
		leaf := c.conns.Load().leaf
		t := time.NewTimer(renewalWait(leaf, backoff, time.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.closed:
			t.Stop()
			return
		case <-t.C:
		}
		err := c.Renew(ctx)
		if err == nil {
			backoff = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		backoff = retryBackoff(backoff, time.Until(leaf.NotAfter))
		c.log.Error("cannot renew the agent certificate; trying again", "expires", leaf.NotAfter, "retryIn", backoff, "err", err)
	}
}

// renewalWait is how long KeepRenewed waits before it renews leaf at now: until RenewAt, or
// backoff after a failed renewal; never less than nothing.
func renewalWait(leaf *x509.Certificate, backoff time.Duration, now time.Time) time.Duration {
	if backoff > 0 {
		return backoff
	}
	return max(RenewAt(leaf).Sub(now), 0)
}

// retryBackoff is the wait after a failed renewal that followed a wait of prev, with left
// until the certificate expires: doubled from a second, at most a minute, and at most an
// eighth of what is left (at least a second), so that it is tried several times before the
// certificate expires (once it has, only a new join helps: TLS refuses it before any
// renewal).
func retryBackoff(prev, left time.Duration) time.Duration {
	return min(max(2*prev, time.Second), max(min(time.Minute, left/8), time.Second))
}

// retryable reports whether another server may answer where this one did not.
func retryable(status int, err error) bool {
	return err != nil || status == http.StatusServiceUnavailable || status == http.StatusBadGateway
}

// call posts a JSON request to each server in turn, from the current one, until one
// answers; the answer is decoded into out.
func (c *Client) call(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var last error
	n := len(c.servers)
	start := int(c.cur.Load())
	for i := range n {
		idx := (start + i) % n
		status, b, err := c.post(ctx, c.servers[idx], op, body)
		if retryable(status, err) {
			last = serverErr(status, b, err)
			if i+1 < n && ctx.Err() == nil {
				c.cur.CompareAndSwap(int32(idx), int32((idx+1)%n))
				continue
			}
			c.cur.CompareAndSwap(int32(idx), int32((idx+1)%n))
			break
		}
		if status != http.StatusOK {
			return serverErr(status, b, nil)
		}
		if out == nil {
			return nil
		}
		return json.Unmarshal(b, out)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, ctx.Err())
	}
	return last
}

// CallTimeout bounds one request to one server. A server cut off by the network leaves a
// kept-alive connection open and silent; without a bound, a request on it would wait for
// TCP to give up, many minutes later, instead of moving to the next server.
const CallTimeout = 5 * time.Second

func (c *Client) post(ctx context.Context, server, op string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(server, "/")+Path+op, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.conns.Load().hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, b, err
}

// serverErr turns an answer back into the store's errors.
func serverErr(status int, b []byte, err error) error {
	if err != nil {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	var e errorBody
	_ = json.Unmarshal(b, &e)
	for _, c := range codes {
		if c.code == e.Code {
			return fmt.Errorf("%w (server: %s)", c.err, e.Message)
		}
	}
	return fmt.Errorf("server answered %d %s: %s", status, e.Code, e.Message)
}

func (c *Client) Get(ctx context.Context, key string) (store.KV, error) {
	var kv store.KV
	err := c.call(ctx, "get", keyReq{Key: key}, &kv)
	return kv, err
}

func (c *Client) List(ctx context.Context, prefix string) ([]store.KV, error) {
	var kvs []store.KV
	err := c.call(ctx, "list", keyReq{Key: prefix}, &kvs)
	return kvs, err
}

func (c *Client) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) error {
	return c.call(ctx, "txn", keyReq{Conds: conds, Ops: ops}, nil)
}

func (c *Client) Snapshot(ctx context.Context, prefixes ...string) (int64, []store.KV, error) {
	var r snapshotResp
	err := c.call(ctx, "snapshot", keyReq{Prefixes: prefixes}, &r)
	return r.Rev, r.KVs, err
}

func (c *Client) Grant(context.Context, time.Duration) (store.LeaseID, error) {
	return 0, fmt.Errorf("%w: leases", store.ErrForbidden)
}
func (c *Client) KeepAlive(context.Context, store.LeaseID) error {
	return fmt.Errorf("%w: leases", store.ErrForbidden)
}
func (c *Client) Revoke(context.Context, store.LeaseID) error {
	return fmt.Errorf("%w: leases", store.ErrForbidden)
}

// Issue makes a key here and has the server sign a server certificate for it.
func (c *Client) Issue(dnsNames []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	cn := ""
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	csr, key, err := devca.NewRequest(cn, dnsNames, ips)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out map[string]string
	if err := c.call(ctx, "sign", keyReq{CSR: string(csr)}, &out); err != nil {
		return nil, nil, fmt.Errorf("sign certificate for %v: %w", dnsNames, err)
	}
	return []byte(out["cert"]), key, nil
}

// IssueReplication makes a key here and has the server sign the replication client
// certificate of instance uid (an instance of this agent's region).
func (c *Client) IssueReplication(uid string) (certPEM, keyPEM []byte, err error) {
	csr, key, err := devca.NewRequest(devca.ReplicationCN(uid), nil, nil)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out map[string]string
	if err := c.call(ctx, "signReplication", keyReq{CSR: string(csr), UID: uid}, &out); err != nil {
		return nil, nil, fmt.Errorf("sign the replication certificate of %s: %w", uid, err)
	}
	return []byte(out["cert"]), key, nil
}

// Watch follows prefix on a server, moving to the next server when the stream breaks or
// goes silent; every new stream starts with one event, since changes may have been missed
// in between.
func (c *Client) Watch(ctx context.Context, prefix string) <-chan store.Event {
	return c.watch(ctx, prefix, -1)
}

// WatchFrom follows prefix from rev, across servers, resuming each new stream after the
// last revision delivered.
func (c *Client) WatchFrom(ctx context.Context, prefix string, rev int64) <-chan store.Event {
	return c.watch(ctx, prefix, rev)
}

func (c *Client) watch(ctx context.Context, prefix string, from int64) <-chan store.Event {
	out := make(chan store.Event, 16)
	go func() {
		defer close(out)
		first := true
		for attempt := 0; ; attempt++ {
			if ctx.Err() != nil {
				return
			}
			idx := int(c.cur.Load()) % len(c.servers)
			delivered, done, err := c.stream(ctx, c.servers[idx], prefix, &from, out, !first)
			if done {
				return
			}
			if delivered || errors.Is(err, errReplaced) {
				attempt = 0
			}
			first = false
			if err != nil && !errors.Is(err, errReplaced) && ctx.Err() == nil {
				c.log.Debug("watch stream ended; trying again", "prefix", prefix, "server", c.servers[idx], "err", err)
				c.cur.CompareAndSwap(int32(idx), int32((idx+1)%len(c.servers)))
			}
			select {
			case <-ctx.Done():
				return
			case <-c.closed:
				return
			case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, time.Second)):
			}
		}
	}()
	return out
}

// errReplaced ends a watch stream whose connection has the certificate a renewal replaced.
var errReplaced = errors.New("the agent certificate was renewed")

// stream reads one watch stream. done means the watch is over (ctx ended, or compaction was
// delivered).
func (c *Client) stream(ctx context.Context, server, prefix string, from *int64, out chan<- store.Event, resumed bool) (delivered, done bool, err error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cs := c.conns.Load()
	q := url.Values{"prefix": {prefix}}
	if *from >= 0 {
		q.Set("from", strconv.FormatInt(*from, 10))
	}
	req, err := http.NewRequestWithContext(sctx, "GET", strings.TrimRight(server, "/")+Path+"watch?"+q.Encode(), nil)
	if err != nil {
		return false, false, err
	}
	resp, err := cs.watchHC.Do(req)
	if err != nil {
		return false, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		err := serverErr(resp.StatusCode, b, nil)
		if errors.Is(err, store.ErrForbidden) {
			c.log.Error("watch refused", "prefix", prefix, "err", err)
			return false, true, err
		}
		return false, false, err
	}
	// A silent stream is a dead one: heartbeats come every few seconds.
	alive := make(chan struct{}, 1)
	go func() {
		t := time.NewTimer(c.HeartbeatTimeout)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-c.closed:
				cancel(nil)
				return
			case <-cs.replaced:
				cancel(errReplaced)
				return
			case <-alive:
				if !t.Stop() {
					<-t.C
				}
				t.Reset(c.HeartbeatTimeout)
			case <-t.C:
				cancel(nil)
				return
			}
		}
	}()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		select {
		case alive <- struct{}{}:
		default:
		}
		var ev wireEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return delivered, false, err
		}
		switch {
		case ev.Heartbeat:
			continue
		case ev.Hello:
			// For a plain watch, something may have changed while no stream was open.
			if resumed && *from < 0 {
				select {
				case out <- store.Event{}: // Key "": the watch was set up again
				case <-ctx.Done():
					return delivered, true, nil
				}
			}
			continue
		}
		select {
		case out <- ev.Event:
			delivered = true
		case <-ctx.Done():
			return delivered, true, nil
		}
		if *from >= 0 {
			if ev.Compacted {
				return delivered, true, nil
			}
			*from = ev.Rev
		}
	}
	if ctx.Err() != nil {
		return delivered, true, nil
	}
	if errors.Is(context.Cause(sctx), errReplaced) {
		return delivered, false, errReplaced
	}
	err = sc.Err()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return delivered, false, err
}
