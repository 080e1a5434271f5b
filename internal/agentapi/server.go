// Package agentapi is the link between `fog server` and the agents of `fog agent`: a join
// that turns a one-time token and a certificate request into a client certificate signed by
// Fog's CA, and, after that, the agent's view of the store over mutual TLS, scoped to its
// region (store.AgentScope), plus signing of its instances' and listeners' server
// certificates from requests, for their names and addresses only. The CA key stays on the
// server; an agent's keys stay on the agent.
//
// Agent certificates are recorded by serial number and checked on every request: an agent
// renews its certificate (Client.KeepRenewed) before it expires, and an operator revokes an
// agent (`fog agent revoke`, Revoke), after which no server takes its certificate.
package agentapi

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/store"
)

// Path is the prefix of every agent endpoint on the server's HTTPS port.
const Path = "/agent/v1/"

// CommonNamePrefix starts the common name of every agent certificate: "agent:eastus".
const CommonNamePrefix = "agent:"

// CertValidity is how long an agent certificate is valid.
const CertValidity = 365 * 24 * time.Hour

var regionRe = regexp.MustCompile(`^[a-z][a-z0-9]{1,31}$`)

// Server serves the agent endpoints.
type Server struct {
	st      store.Store
	ca      *devca.CA
	regions map[string]bool
	log     *slog.Logger
	// Heartbeat is how often an idle watch stream sends a line, so an agent notices a dead
	// server within a few of them. A stream also checks its certificate again at each one.
	Heartbeat time.Duration
	// CertValidity is how long an agent certificate signed at a join or a renewal is valid.
	CertValidity time.Duration
	// RenewalGrace is how long a renewed certificate stays good after its renewal.
	RenewalGrace time.Duration
}

// NewServer returns the agent endpoints over st, signing with ca, for agents of regions.
func NewServer(st store.Store, ca *devca.CA, regions []string, log *slog.Logger) *Server {
	m := map[string]bool{}
	for _, r := range regions {
		m[r] = true
	}
	return &Server{st: st, ca: ca, regions: m, log: log, Heartbeat: 2 * time.Second,
		CertValidity: CertValidity, RenewalGrace: RenewalGrace}
}

// Region returns the region of the agent that made r, from its verified client certificate.
// It does not say whether the certificate was revoked: the agent endpoints check that too.
func Region(r *http.Request) (string, bool) {
	region, _, ok := agentCert(r)
	return region, ok
}

func agentCert(r *http.Request) (string, *x509.Certificate, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", nil, false
	}
	leaf := r.TLS.VerifiedChains[0][0]
	region, ok := strings.CutPrefix(leaf.Subject.CommonName, CommonNamePrefix)
	return region, leaf, ok && regionRe.MatchString(region)
}

// Handler serves Path.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path+"ca", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.ca.CertPEM)
	})
	mux.HandleFunc("POST "+Path+"join", s.join)
	mux.HandleFunc("POST "+Path+"get", s.agent(s.get))
	mux.HandleFunc("POST "+Path+"list", s.agent(s.list))
	mux.HandleFunc("POST "+Path+"snapshot", s.agent(s.snapshot))
	mux.HandleFunc("POST "+Path+"txn", s.agent(s.txn))
	mux.HandleFunc("POST "+Path+"sign", s.agent(s.sign))
	mux.HandleFunc("POST "+Path+"signReplication", s.agent(s.signReplication))
	mux.HandleFunc("POST "+Path+"renew", s.agent(s.renew))
	mux.HandleFunc("GET "+Path+"watch", s.agent(s.watch))
	mux.HandleFunc("GET "+Path+"agents", s.listAgents)
	mux.HandleFunc("POST "+Path+"revoke", s.revoke)
	return mux
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

var codes = []struct {
	err    error
	status int
	code   string
}{
	{store.ErrNotFound, http.StatusNotFound, "NotFound"},
	{store.ErrConflict, http.StatusConflict, "Conflict"},
	// Before ErrForbidden, which it wraps.
	{ErrRevoked, http.StatusForbidden, "AgentCertificateRevoked"},
	{store.ErrForbidden, http.StatusForbidden, "Forbidden"},
	{store.ErrLeaseNotFound, http.StatusGone, "LeaseNotFound"},
	{store.ErrUnavailable, http.StatusServiceUnavailable, "StoreUnavailable"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "StoreUnavailable"},
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Code: code, Message: msg})
}

// writeStoreErr answers err, a failure to read or write the store, with the code the agents
// branch on. A failure of no known kind is the server's own: the agent is told an error id,
// and the server log has err under it.
func (s *Server) writeStoreErr(w http.ResponseWriter, r *http.Request, err error) {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			writeErr(w, c.status, c.code, err.Error())
			return
		}
	}
	writeErr(w, http.StatusInternalServerError, "InternalError", s.failure(r, "InternalError", "Fog could not complete the request", err))
}

// failure logs err, a failure of the server's own, at ERROR under a new error id and returns
// the message a client is told of it: summary and the id, never err's text.
func (s *Server) failure(r *http.Request, code, summary string, err error) string {
	return arm.Report(s.log, fault.Failure(code, summary, err), "method", r.Method, "path", r.URL.Path).Message
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidRequestContent", "the body is not the expected JSON: "+err.Error())
		return false
	}
	return true
}

// caller is the agent a request comes from: its region, its certificate and the store
// scoped to the region.
type caller struct {
	region string
	cert   *x509.Certificate
	st     store.Store
}

// agent wraps a handler that needs an agent's client certificate, one not revoked; it gets
// the store scoped to that agent's region.
func (s *Server) agent(h func(w http.ResponseWriter, r *http.Request, c caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		region, cert, ok := agentCert(r)
		if !ok {
			writeErr(w, http.StatusUnauthorized, "AgentCertificateRequired",
				"this endpoint is for Fog agents: present the client certificate `fog agent` obtained with its join token")
			return
		}
		if err := s.checkCert(r.Context(), region, cert); err != nil {
			if errors.Is(err, ErrRevoked) {
				s.log.Warn("refused a revoked agent certificate", "region", region, "serial", SerialHex(cert.SerialNumber), "err", err)
			}
			s.writeStoreErr(w, r, err)
			return
		}
		h(w, r, caller{region: region, cert: cert, st: store.Scoped(s.st, store.AgentScope(region))})
	}
}

type keyReq struct {
	Key       string   `json:"key,omitempty"`
	Prefixes  []string `json:"prefixes,omitempty"`
	Conds     []store.Cond
	Ops       []store.Op
	CSR       string `json:"csr,omitempty"`
	Token     string `json:"token,omitempty"`
	Region    string `json:"region,omitempty"`
	ExpiresIn string `json:"expiresIn,omitempty"`
	UID       string `json:"uid,omitempty"`
}

type snapshotResp struct {
	Rev int64
	KVs []store.KV
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, c caller) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	kv, err := c.st.Get(r.Context(), q.Key)
	if err != nil {
		s.writeStoreErr(w, r, err)
		return
	}
	writeJSON(w, kv)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, c caller) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	kvs, err := c.st.List(r.Context(), q.Key)
	if err != nil {
		s.writeStoreErr(w, r, err)
		return
	}
	writeJSON(w, kvs)
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request, c caller) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	rev, kvs, err := c.st.Snapshot(r.Context(), q.Prefixes...)
	if err != nil {
		s.writeStoreErr(w, r, err)
		return
	}
	writeJSON(w, snapshotResp{Rev: rev, KVs: kvs})
}

func (s *Server) txn(w http.ResponseWriter, r *http.Request, c caller) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	if err := c.st.Txn(r.Context(), q.Conds, q.Ops); err != nil {
		s.writeStoreErr(w, r, err)
		return
	}
	writeJSON(w, struct{}{})
}

// sign signs a server certificate (an instance's, a listener's) from the agent's request,
// when every name and address in it is one of the agent's region's instances or listeners
// (sanPolicy). Without that check, any agent could have a certificate for the API's
// address or another region's instance that every client trusting Fog's CA accepts.
func (s *Server) sign(w http.ResponseWriter, r *http.Request, c caller) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	req, err := devca.ParseRequest([]byte(q.CSR))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidCertificateRequest", err.Error())
		return
	}
	p, err := s.policy(r.Context(), r, c.region)
	if err != nil {
		s.writeStoreErr(w, r, err)
		return
	}
	if err := p.check(req); err != nil {
		s.log.Warn("refused to sign a server certificate", "region", c.region, "dnsNames", req.DNSNames, "ips", req.IPAddresses, "err", err)
		writeErr(w, http.StatusForbidden, "CertificateNameForbidden", err.Error())
		return
	}
	crt, err := s.ca.SignRequest([]byte(q.CSR), devca.ServerUsage, "", 2*CertValidity)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidCertificateRequest", err.Error())
		return
	}
	s.log.Debug("signed a server certificate", "region", c.region, "dnsNames", req.DNSNames, "ips", req.IPAddresses)
	writeJSON(w, map[string]string{"cert": string(crt)})
}

// signReplication signs the replication client certificate of an instance of the agent's
// own region that is in a failover group (its identity towards its partner, whose
// pg_hba.conf admits that name alone): an agent cannot obtain another region's instance's
// identity, nor one for an instance that has no partner.
func (s *Server) signReplication(w http.ResponseWriter, r *http.Request, c caller) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	if q.UID == "" || strings.ContainsAny(q.UID, "/ \t\n") {
		writeErr(w, http.StatusBadRequest, "InvalidInstance", "uid names an instance of this agent's region")
		return
	}
	var spec instance.Spec
	_, err := store.Get(r.Context(), c.st, instance.SpecKey(c.region, q.UID), &spec)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeErr(w, http.StatusForbidden, "Forbidden", fmt.Sprintf("instance %s is not in region %s", q.UID, c.region))
		return
	case err != nil:
		s.writeStoreErr(w, r, err)
		return
	case spec.Deleted || (spec.Peer == nil && spec.Upstream == nil):
		writeErr(w, http.StatusForbidden, "Forbidden", fmt.Sprintf("instance %s is in no failover group, so it replicates to no partner", q.UID))
		return
	}
	crt, err := s.ca.SignRequest([]byte(q.CSR), devca.ClientUsage, devca.ReplicationCN(q.UID), 2*CertValidity)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidCertificateRequest", err.Error())
		return
	}
	s.log.Debug("signed a replication certificate", "region", c.region, "instance", q.UID)
	writeJSON(w, map[string]string{"cert": string(crt)})
}

// renew signs a new client certificate for the agent, authenticated by its current one, and
// records that the new one replaces it: the old one is refused once RenewalGrace has passed.
func (s *Server) renew(w http.ResponseWriter, r *http.Request, c caller) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	ctx := r.Context()
	crt, err := s.ca.SignRequest([]byte(q.CSR), devca.ClientUsage, CommonNamePrefix+c.region, s.CertValidity)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidCertificateRequest", err.Error())
		return
	}
	next, err := parseCert(crt)
	if err != nil {
		s.writeStoreErr(w, r, err)
		return
	}
	conds, ops, err := s.renewalOps(ctx, c.region, c.cert, next)
	if err == nil {
		err = s.st.Txn(ctx, conds, ops)
	}
	if err != nil {
		// A conflict: a revocation or another renewal of this certificate came first. The
		// agent tries again, and is refused if it was revoked.
		s.writeStoreErr(w, r, fmt.Errorf("record the renewal: %w", err))
		return
	}
	pruneExpired(ctx, s.st)
	s.log.Info("agent certificate renewed", "region", c.region, "serial", SerialHex(c.cert.SerialNumber), "to", SerialHex(next.SerialNumber), "expires", next.NotAfter)
	writeJSON(w, map[string]string{"cert": string(crt)})
}

// watch streams events as JSON lines; an idle stream carries a heartbeat line. A stream
// outlives the check made when it started, so each heartbeat checks the certificate again and
// ends the stream of a revoked one.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, c caller) {
	prefix := r.URL.Query().Get("prefix")
	if err := store.AgentScope(c.region).CheckWatch(prefix); err != nil {
		s.writeStoreErr(w, r, err)
		return
	}
	var ch <-chan store.Event
	if from := r.URL.Query().Get("from"); from != "" {
		rev, err := strconv.ParseInt(from, 10, 64)
		if err != nil || rev < 0 {
			writeErr(w, http.StatusBadRequest, "InvalidRevision", "from must be a store revision")
			return
		}
		ch = c.st.WatchFrom(r.Context(), prefix, rev)
	} else {
		ch = c.st.Watch(r.Context(), prefix)
	}
	fl, _ := w.(http.Flusher)
	// A watch lasts as long as the agent: no read deadline, and a write deadline per line.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	send := func(v any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if enc.Encode(v) != nil || bw.Flush() != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	if !send(wireEvent{Hello: true}) {
		return
	}
	hb := time.NewTicker(s.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if !send(wireEvent{Event: ev}) {
				return
			}
		case <-hb.C:
			if err := s.checkCert(r.Context(), c.region, c.cert); errors.Is(err, ErrRevoked) {
				s.log.Warn("ended the watch of a revoked agent certificate", "region", c.region, "serial", SerialHex(c.cert.SerialNumber))
				return
			}
			if !send(wireEvent{Heartbeat: true}) {
				return
			}
		}
	}
}

type wireEvent struct {
	store.Event
	Hello     bool `json:",omitempty"`
	Heartbeat bool `json:",omitempty"`
}

// join turns a one-time join token and a certificate request into the agent's client
// certificate. Spending the token and recording the certificate are one transaction, so no
// certificate is handed out that the servers do not know (and could not revoke) by serial.
func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	ctx := r.Context()
	tok, err := readJoinToken(ctx, s.st, q.Token)
	if err != nil {
		if errors.Is(err, errBadToken) {
			writeErr(w, http.StatusUnauthorized, "InvalidJoinToken", err.Error())
			return
		}
		s.writeStoreErr(w, r, err)
		return
	}
	spend := []store.Cond{{Key: tok.key, Rev: tok.rev}}
	if time.Now().After(tok.rec.Expires) {
		_ = s.st.Txn(ctx, spend, []store.Op{{Key: tok.key, Delete: true}})
		writeErr(w, http.StatusUnauthorized, "InvalidJoinToken", errBadToken.Error())
		return
	}
	region := tok.rec.Region
	crt, rec, err := s.signAgent([]byte(q.CSR), region)
	if err != nil {
		// A request that cannot be signed spends the token all the same: a token is for
		// one attempt.
		_ = s.st.Txn(ctx, spend, []store.Op{{Key: tok.key, Delete: true}})
		writeErr(w, http.StatusBadRequest, "InvalidCertificateRequest", err.Error())
		return
	}
	err = s.st.Txn(ctx, append(spend, store.Cond{Key: certKey(rec.Serial), Rev: 0}),
		[]store.Op{{Key: tok.key, Delete: true}, store.PutOp(certKey(rec.Serial), rec)})
	if errors.Is(err, store.ErrConflict) {
		writeErr(w, http.StatusUnauthorized, "InvalidJoinToken", errBadToken.Error())
		return
	}
	if err != nil {
		s.writeStoreErr(w, r, fmt.Errorf("record the agent certificate: %w", err))
		return
	}
	pruneExpired(ctx, s.st)
	s.log.Info("agent joined", "region", region, "agent", rec.Agent, "expires", rec.Expires)
	writeJSON(w, map[string]string{"cert": string(crt), "ca": string(s.ca.CertPEM), "region": region})
}

// signAgent signs the client certificate of a new agent of region from its request, and
// returns it with the record to keep of it.
func (s *Server) signAgent(csr []byte, region string) ([]byte, AgentCert, error) {
	crt, err := s.ca.SignRequest(csr, devca.ClientUsage, CommonNamePrefix+region, s.CertValidity)
	if err != nil {
		return nil, AgentCert{}, err
	}
	cert, err := parseCert(crt)
	if err != nil {
		return nil, AgentCert{}, err
	}
	return crt, newRecord(cert, region, ""), nil
}

// Join tokens are kept as a SHA-256 of their secret, with the region they admit and their
// expiry; joining deletes the record in the same transaction that checks it, so a token
// admits one agent.
const joinTokenPrefix = "jointokens/"

type joinTokenRecord struct {
	Region  string    `json:"region"`
	Expires time.Time `json:"expires"`
}

var errBadToken = errors.New("the join token is unknown, used already or expired: create a new one with `fog join-token create --region REGION`")

func joinKey(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return joinTokenPrefix + hex.EncodeToString(h[:])
}

// CAPin is the pin of a CA certificate carried in join tokens: the SHA-256 of its DER.
func CAPin(caPEM []byte) (string, error) {
	cert, err := parseCert(caPEM)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(h[:]), nil
}

// CreateJoinToken makes a one-time token that admits one agent of region until ttl has
// passed. The token also carries the pin of the CA, so the agent can verify the server
// before it has the CA: fogjoin.SECRET.PIN.
func CreateJoinToken(ctx context.Context, st store.Store, caPEM []byte, region string, ttl time.Duration) (string, time.Time, error) {
	pin, err := CAPin(caPEM)
	if err != nil {
		return "", time.Time{}, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, err
	}
	secret := base64.RawURLEncoding.EncodeToString(b)
	exp := time.Now().Add(ttl).UTC()
	if err := store.Put(ctx, st, joinKey(secret), joinTokenRecord{Region: region, Expires: exp}); err != nil {
		return "", time.Time{}, err
	}
	return "fogjoin." + secret + "." + pin, exp, nil
}

// ParseJoinToken splits a token into its secret and CA pin.
func ParseJoinToken(tok string) (secret, pin string, err error) {
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 || parts[0] != "fogjoin" || len(parts[1]) != 43 || len(parts[2]) != 64 {
		return "", "", errors.New("a join token looks like fogjoin.<secret>.<CA pin>, as `fog join-token create` prints it")
	}
	return parts[1], parts[2], nil
}

type joinToken struct {
	key string
	rev int64
	rec joinTokenRecord
}

// readJoinToken finds the record of tok; errBadToken when there is none.
func readJoinToken(ctx context.Context, st store.Store, tok string) (joinToken, error) {
	secret, _, err := ParseJoinToken(tok)
	if err != nil {
		return joinToken{}, fmt.Errorf("%w (%v)", errBadToken, err)
	}
	t := joinToken{key: joinKey(secret)}
	t.rev, err = store.Get(ctx, st, t.key, &t.rec)
	if errors.Is(err, store.ErrNotFound) {
		return t, errBadToken
	}
	return t, err
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	rest := certPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM certificate")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}
