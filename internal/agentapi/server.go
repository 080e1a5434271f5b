// Package agentapi is the link between `fog server` and the agents of `fog agent`: a join
// that turns a one-time token and a certificate request into a client certificate signed by
// Fog's CA, and, after that, the agent's view of the store over mutual TLS, scoped to its
// region (store.AgentScope), plus signing of its instances' and listeners' server
// certificates from requests. The CA key stays on the server; an agent's keys stay on the
// agent.
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

	"github.com/fogdb/fog/internal/devca"
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
	// server within a few of them.
	Heartbeat time.Duration
}

// NewServer returns the agent endpoints over st, signing with ca, for agents of regions.
func NewServer(st store.Store, ca *devca.CA, regions []string, log *slog.Logger) *Server {
	m := map[string]bool{}
	for _, r := range regions {
		m[r] = true
	}
	return &Server{st: st, ca: ca, regions: m, log: log, Heartbeat: 2 * time.Second}
}

// Region returns the region of the agent that made r, from its verified client certificate.
func Region(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	region, ok := strings.CutPrefix(cn, CommonNamePrefix)
	return region, ok && regionRe.MatchString(region)
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
	mux.HandleFunc("GET "+Path+"watch", s.agent(s.watch))
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

func writeStoreErr(w http.ResponseWriter, err error) {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			writeErr(w, c.status, c.code, err.Error())
			return
		}
	}
	writeErr(w, http.StatusInternalServerError, "InternalError", err.Error())
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

// agent wraps a handler that needs an agent's client certificate; it gets the store scoped
// to that agent's region.
func (s *Server) agent(h func(w http.ResponseWriter, r *http.Request, region string, st store.Store)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		region, ok := Region(r)
		if !ok {
			writeErr(w, http.StatusUnauthorized, "AgentCertificateRequired",
				"this endpoint is for Fog agents: present the client certificate `fog agent --join-token` obtained")
			return
		}
		h(w, r, region, store.Scoped(s.st, store.AgentScope(region)))
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

func (s *Server) get(w http.ResponseWriter, r *http.Request, _ string, st store.Store) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	kv, err := st.Get(r.Context(), q.Key)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	writeJSON(w, kv)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, _ string, st store.Store) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	kvs, err := st.List(r.Context(), q.Key)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	writeJSON(w, kvs)
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request, _ string, st store.Store) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	rev, kvs, err := st.Snapshot(r.Context(), q.Prefixes...)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	writeJSON(w, snapshotResp{Rev: rev, KVs: kvs})
}

func (s *Server) txn(w http.ResponseWriter, r *http.Request, _ string, st store.Store) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	if err := st.Txn(r.Context(), q.Conds, q.Ops); err != nil {
		writeStoreErr(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

// sign signs a server certificate (an instance's, a listener's) from the agent's request.
func (s *Server) sign(w http.ResponseWriter, r *http.Request, region string, _ store.Store) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	crt, err := s.ca.SignRequest([]byte(q.CSR), devca.ServerUsage, "", 2*CertValidity)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidCertificateRequest", err.Error())
		return
	}
	s.log.Debug("signed a server certificate", "region", region)
	writeJSON(w, map[string]string{"cert": string(crt)})
}

// signReplication signs the replication client certificate of an instance of the agent's
// own region (its identity towards its failover-group partner): an agent cannot obtain
// another region's instance's identity.
func (s *Server) signReplication(w http.ResponseWriter, r *http.Request, region string, st store.Store) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	if q.UID == "" || strings.ContainsAny(q.UID, "/") {
		writeErr(w, http.StatusBadRequest, "InvalidInstance", "uid names an instance of this agent's region")
		return
	}
	if _, err := st.Get(r.Context(), instance.SpecKey(region, q.UID)); err != nil {
		writeErr(w, http.StatusForbidden, "Forbidden", fmt.Sprintf("instance %s is not in region %s", q.UID, region))
		return
	}
	crt, err := s.ca.SignRequest([]byte(q.CSR), devca.ClientUsage, devca.ReplicationCN(q.UID), 2*CertValidity)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidCertificateRequest", err.Error())
		return
	}
	s.log.Debug("signed a replication certificate", "region", region, "instance", q.UID)
	writeJSON(w, map[string]string{"cert": string(crt)})
}

// watch streams events as JSON lines; an idle stream carries a heartbeat line.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, region string, st store.Store) {
	prefix := r.URL.Query().Get("prefix")
	if err := store.AgentScope(region).Check([]string{prefix}, nil); err != nil {
		writeStoreErr(w, err)
		return
	}
	var ch <-chan store.Event
	if from := r.URL.Query().Get("from"); from != "" {
		rev, err := strconv.ParseInt(from, 10, 64)
		if err != nil || rev < 0 {
			writeErr(w, http.StatusBadRequest, "InvalidRevision", "from must be a store revision")
			return
		}
		ch = st.WatchFrom(r.Context(), prefix, rev)
	} else {
		ch = st.Watch(r.Context(), prefix)
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
// certificate.
func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var q keyReq
	if !readJSON(w, r, &q) {
		return
	}
	ctx := r.Context()
	region, err := consumeJoinToken(ctx, s.st, q.Token)
	if err != nil {
		if errors.Is(err, errBadToken) {
			writeErr(w, http.StatusUnauthorized, "InvalidJoinToken", err.Error())
			return
		}
		writeStoreErr(w, err)
		return
	}
	crt, err := s.ca.SignRequest([]byte(q.CSR), devca.ClientUsage, CommonNamePrefix+region, CertValidity)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidCertificateRequest", err.Error())
		return
	}
	s.log.Info("agent joined", "region", region)
	writeJSON(w, map[string]string{"cert": string(crt), "ca": string(s.ca.CertPEM), "region": region})
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

func consumeJoinToken(ctx context.Context, st store.Store, tok string) (string, error) {
	secret, _, err := ParseJoinToken(tok)
	if err != nil {
		return "", fmt.Errorf("%w (%v)", errBadToken, err)
	}
	var rec joinTokenRecord
	rev, err := store.Get(ctx, st, joinKey(secret), &rec)
	if errors.Is(err, store.ErrNotFound) {
		return "", errBadToken
	}
	if err != nil {
		return "", err
	}
	if err := st.Txn(ctx, []store.Cond{{Key: joinKey(secret), Rev: rev}}, []store.Op{{Key: joinKey(secret), Delete: true}}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return "", errBadToken
		}
		return "", err
	}
	if time.Now().After(rec.Expires) {
		return "", errBadToken
	}
	return rec.Region, nil
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
