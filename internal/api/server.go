// Package api serves Fog's ARM-compatible REST API: authentication, request validation and
// the HTTP handlers for each resource type. It turns errors into ARM error bodies; everything
// else lives in the controller.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/resource"
)

// InstanceAPIVersions are the api-versions accepted for managed instances and databases.
var InstanceAPIVersions = arm.APIVersions{
	"2021-05-01-preview", "2021-08-01-preview", "2021-11-01", "2022-02-01-preview",
	"2022-05-01-preview", "2022-08-01-preview", "2022-11-01-preview", "2023-02-01-preview",
	"2023-05-01-preview", "2023-08-01", "2023-08-01-preview", "2024-05-01-preview",
	"2024-11-01-preview", "2025-01-01",
}

// RetryAfter is the Retry-After, in seconds, sent with 202 responses. Azure sends 10 to 15;
// Fog's operations take seconds, so clients that honour it should not wait longer.
const RetryAfter = 1

// Server is the HTTP API.
type Server struct {
	c          *controller.Controller
	tokens     *authz.Tokens
	log        *slog.Logger
	joinTokens JoinTokenFunc
	metrics    http.Handler
	// limits are the per-principal request rate limiters (nil: no limit).
	limits *principalLimits
	// baseURL is the API's external URL (scheme and host): long-running-operation URLs are
	// built from it, never from a request's Host header, which a client chooses.
	baseURL string
	// authz checks every call against role assignments (nil: every token may do everything).
	authz *authz.Authorizer
}

// WithBaseURL sets the external URL operation URLs point to (https://host:port).
func (s *Server) WithBaseURL(u string) *Server {
	s.baseURL = strings.TrimRight(u, "/")
	return s
}

// WithMetrics serves /metrics (Prometheus text format) with h; the bearer token is required
// there as everywhere.
func (s *Server) WithMetrics(h http.Handler) *Server {
	s.metrics = h
	return s
}

// New returns the API server.
func New(c *controller.Controller, tokens *authz.Tokens, log *slog.Logger) *Server {
	return &Server{c: c, tokens: tokens, log: log}
}

// WithJoinTokens serves JoinTokenPath with fn.
func (s *Server) WithJoinTokens(fn JoinTokenFunc) *Server {
	s.joinTokens = fn
	return s
}

const (
	miPath = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{name}"
	dbPath = miPath + "/databases/{db}"
	// strPath is a database's short-term retention policies.
	strPath = dbPath + "/backupShortTermRetentionPolicies"
	// rddPath is an instance's restorable dropped databases.
	rddPath = miPath + "/restorableDroppedDatabases"
	// recPath is an instance's databases a geo-restore can recover.
	recPath = miPath + "/recoverableDatabases"
	opBase  = "/subscriptions/{sub}/providers/Microsoft.Sql/locations/{loc}/"
)

// retentionOpKind names the operation URLs of a short-term retention policy's PUT, as Azure's
// (managedShortTermRetentionPolicyAzureAsyncOperation, ...OperationResults; the az CLI's
// recorded traffic, test_sql_managed_db_short_retention.yaml).
const retentionOpKind = "managedShortTermRetentionPolicy"

// Handler returns the API's http.Handler.
func (s *Server) Handler() http.Handler {
	rt := &arm.Router{}
	s.instanceRoutes(rt)
	s.groupRoutes(rt)
	rt.Handle("POST", JoinTokenPath, s.createJoinToken)
	s.tokenRoutes(rt)
	if s.authz != nil {
		s.subscriptionRoutes(rt)
	}
	rt.Handle("GET", activityPath, s.activityLog)
	if s.metrics != nil {
		rt.Handle("GET", "/metrics", s.metrics.ServeHTTP)
	}
	for _, kind := range []string{"managedInstance", "managedDatabase", retentionOpKind, ltrPolicyOpKind, ltrBackupOpKind} {
		rt.Handle("GET", opBase+kind+"AzureAsyncOperation/{op}", s.operationStatus)
		rt.Handle("GET", opBase+kind+"OperationResults/{op}", s.operationResult)
	}
	return s.logRequests(limitBody(checkPath(s.authenticate(readBody(s.authzRoutes(rt))))))
}

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// checkPath refuses subscription ids that are not UUIDs, as ARM does, before anything else
// looks at them. The id is read from the escaped path, as the router reads segments, so an
// encoded '/' cannot smuggle a second segment into it (and from there into store keys).
func checkPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/subscriptions/"); ok {
			raw, _, _ := strings.Cut(rest, "/")
			sub, err := url.PathUnescape(raw)
			if err != nil || !uuidRe.MatchString(sub) {
				arm.WriteError(w, arm.BadRequest("InvalidSubscriptionId", "The provided subscription identifier '%s' is malformed or invalid.", sub))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

type requestIDKey struct{}

// requestIDOf is the x-ms-request-id of the request ctx serves.
func requestIDOf(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// logRequests logs method, path and status. Headers are never logged: they carry the token.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("x-ms-client-request-id")
		if id == "" {
			id = resource.NewUID()
		}
		w.Header().Set("x-ms-request-id", id)
		corr := r.Header.Get("x-ms-correlation-request-id")
		if corr == "" {
			corr = id
		}
		w.Header().Set("x-ms-correlation-request-id", corr)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "took", time.Since(start).Round(time.Microsecond))
	})
}

// decode reads a JSON body into v, or returns the ARM error for a missing or malformed one.
func decode(r *http.Request, v any) *arm.Error {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if isTooLarge(err) || len(body) > MaxBodyBytes {
		return bodyTooLarge()
	}
	if err != nil {
		return arm.BadRequest("InvalidRequestContent", "The request body could not be read: %v.", err)
	}
	if len(body) == 0 {
		return arm.BadRequest("InvalidRequestContent", "The request content was invalid and could not be deserialized: the body is empty; send the resource as JSON.")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return arm.BadRequest("InvalidRequestContent", "The request content was invalid and could not be deserialized: malformed JSON at byte %d: %v.", se.Offset, se)
		case errors.As(err, &te):
			return arm.BadRequest("InvalidRequestContent", "The request content was invalid and could not be deserialized: '%s' must be a JSON %s, not %s.", te.Field, te.Type, te.Value)
		default:
			return arm.BadRequest("InvalidRequestContent", "The request content was invalid and could not be deserialized: %v.", err)
		}
	}
	return nil
}

// accepted writes the 202 of a long-running operation with absolute polling URLs at
// subscription scope, as the Microsoft.Sql resource provider does.
func (s *Server) accepted(w http.ResponseWriter, r *http.Request, op *controller.Operation, apiVersion string) {
	kind := "managedInstance"
	switch op.Kind {
	case controller.KindPutDatabase, controller.KindDeleteDatabase, controller.KindRestoreDatabase:
		kind = "managedDatabase"
	case controller.KindPutRetention:
		kind = retentionOpKind
	case controller.KindPutLTR:
		kind = ltrPolicyOpKind
	case controller.KindDeleteLTRBackup:
		kind = ltrBackupOpKind
	case controller.KindCreateGroup, controller.KindUpdateGroup, controller.KindDeleteGroup, controller.KindFailover, controller.KindForceFailover:
		kind = "instanceFailoverGroup"
	}
	base := fmt.Sprintf("%s/subscriptions/%s/providers/Microsoft.Sql/locations/%s/", s.origin(r), op.Subscription, url.PathEscape(op.Location))
	q := "?api-version=" + url.QueryEscape(apiVersion)
	w.Header().Set("Azure-AsyncOperation", base+kind+"AzureAsyncOperation/"+op.ID+q)
	w.Header().Set("Location", base+kind+"OperationResults/"+op.ID+q)
	w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
	arm.WriteJSON(w, http.StatusAccepted, map[string]any{"operation": op.Name, "startTime": op.StartTime})
}

// origin is the external URL operation URLs start with. Without a configured one (a server
// built directly in a test) it is the address the request arrived at, never its Host header.
func (s *Server) origin(r *http.Request) string {
	if s.baseURL != "" {
		return s.baseURL
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return "https://" + a.String()
	}
	return "https://localhost"
}

// opVersions accepts any api-version of any resource type: the polling URLs carry the
// version of the request that started the operation.
var opVersions = func() arm.APIVersions {
	v := append(append(arm.APIVersions{}, InstanceAPIVersions...), GroupAPIVersions...)
	slices.Sort(v)
	return slices.Compact(v)
}()

func (s *Server) operationStatus(w http.ResponseWriter, r *http.Request) {
	if _, aerr := opVersions.Check(r); aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	op, err := s.c.GetOperation(r.Context(), r.PathValue("sub"), r.PathValue("loc"), r.PathValue("op"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !op.Terminal() {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
	}
	body := op.StatusBody()
	body.ID = r.URL.Path
	arm.WriteJSON(w, http.StatusOK, body)
}

func (s *Server) operationResult(w http.ResponseWriter, r *http.Request) {
	ver, aerr := opVersions.Check(r)
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	ctx := r.Context()
	op, err := s.c.GetOperation(ctx, r.PathValue("sub"), r.PathValue("loc"), r.PathValue("op"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch op.Status {
	case arm.StatusInProgress:
		w.Header().Set("Location", s.origin(r)+r.URL.Path+"?api-version="+url.QueryEscape(ver))
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
		w.WriteHeader(http.StatusAccepted)
		return
	case arm.StatusFailed, arm.StatusCanceled:
		e := *op.Error
		e.Status = op.ErrorStatus
		if e.Status == 0 {
			e.Status = http.StatusInternalServerError
		}
		arm.WriteError(w, &e)
		return
	}
	switch op.Kind {
	case controller.KindPutInstance, controller.KindPutDatabase, controller.KindRestoreDatabase, controller.KindPutRetention, controller.KindPutLTR:
		s.writeResource(w, r, op.ResourceID)
	case controller.KindCreateGroup, controller.KindUpdateGroup, controller.KindFailover, controller.KindForceFailover:
		v, err := s.c.GroupResult(ctx, op)
		s.reply(w, r, v, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
