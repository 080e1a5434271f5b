package api

import (
	"net/http"
	"strings"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/resource"
)

// list is the ARM list envelope.
type list[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

// writeError writes the ARM error a client is told for err: here, at the edge, the domain's
// errors become codes, statuses and messages, and the cause of a failure of Fog's own is
// logged under the error id the client is told (arm.Report).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	arm.WriteError(w, s.report(r, err))
}

// report is the ARM error a client is told for err, the cause of a failure of Fog's own
// logged with the request it failed.
func (s *Server) report(r *http.Request, err error) *arm.Error {
	return arm.Report(s.log, err, "method", r.Method, "path", r.URL.Path, "requestId", requestIDOf(r.Context()))
}

// reply writes v with 200, or the error.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	arm.WriteJSON(w, http.StatusOK, v)
}

// listOf is vs in the list envelope.
func listOf[T any](vs []T) list[T] { return list[T]{Value: vs} }

// replyOp writes the 202 of a started operation, 204 when there was nothing to do, or the error.
func (s *Server) replyOp(w http.ResponseWriter, r *http.Request, ver string, op *controller.Operation, err error) {
	switch {
	case err != nil:
		s.writeError(w, r, err)
	case op == nil:
		w.WriteHeader(http.StatusNoContent)
	default:
		s.accepted(w, r, op, ver)
	}
}

// versioned wraps a handler with the api-version check of its resource type.
func versioned(versions arm.APIVersions, h func(w http.ResponseWriter, r *http.Request, ver string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ver, aerr := versions.Check(r)
		if aerr != nil {
			arm.WriteError(w, aerr)
			return
		}
		h(w, r, ver)
	}
}

func (s *Server) instanceRoutes(rt *arm.Router) {
	v := func(h func(w http.ResponseWriter, r *http.Request, ver string)) http.HandlerFunc {
		return versioned(InstanceAPIVersions, h)
	}
	listInstances := v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vs, aerr := s.c.ListInstances(r.Context(), r.PathValue("sub"), r.PathValue("rg"))
		s.reply(w, r, listOf(vs), aerr)
	})
	rt.Handle("GET", "/subscriptions/{sub}/providers/Microsoft.Sql/managedInstances", listInstances)
	rt.Handle("GET", "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances", listInstances)
	rt.Handle("GET", miPath, v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vi, aerr := s.c.GetInstance(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"))
		s.reply(w, r, vi, aerr)
	}))
	rt.Handle("PUT", miPath, v(func(w http.ResponseWriter, r *http.Request, ver string) {
		var body resource.InstanceJSON
		if aerr := decode(r, &body); aerr != nil {
			arm.WriteError(w, aerr)
			return
		}
		op, aerr := s.c.PutInstance(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), body)
		s.replyOp(w, r, ver, op, aerr)
	}))
	rt.Handle("DELETE", miPath, v(func(w http.ResponseWriter, r *http.Request, ver string) {
		op, aerr := s.c.DeleteInstance(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"))
		s.replyOp(w, r, ver, op, aerr)
	}))
	rt.Handle("GET", miPath+"/databases", v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vs, aerr := s.c.ListDatabases(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"))
		s.reply(w, r, listOf(vs), aerr)
	}))
	rt.Handle("GET", dbPath, v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vd, aerr := s.c.GetDatabase(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"))
		s.reply(w, r, vd, aerr)
	}))
	rt.Handle("PUT", dbPath, v(func(w http.ResponseWriter, r *http.Request, ver string) {
		var body resource.DatabaseJSON
		if aerr := decode(r, &body); aerr != nil {
			arm.WriteError(w, aerr)
			return
		}
		op, existing, aerr := s.c.PutDatabase(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"), body)
		if aerr == nil && existing != nil {
			arm.WriteJSON(w, http.StatusOK, existing)
			return
		}
		s.replyOp(w, r, ver, op, aerr)
	}))
	rt.Handle("DELETE", dbPath, v(func(w http.ResponseWriter, r *http.Request, ver string) {
		op, aerr := s.c.DeleteDatabase(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"))
		s.replyOp(w, r, ver, op, aerr)
	}))
	s.retentionRoutes(rt, v)
	s.ltrRoutes(rt, v)
	rt.Handle("GET", rddPath, v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vs, aerr := s.c.ListRestorableDroppedDatabases(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"))
		s.reply(w, r, listOf(vs), aerr)
	}))
	rt.Handle("GET", rddPath+"/{dropped}", v(func(w http.ResponseWriter, r *http.Request, _ string) {
		d, aerr := s.c.GetRestorableDroppedDatabase(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("dropped"))
		s.reply(w, r, d, aerr)
	}))
	rt.Handle("GET", recPath, v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vs, aerr := s.c.ListRecoverableDatabases(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"))
		s.reply(w, r, listOf(vs), aerr)
	}))
	rt.Handle("GET", recPath+"/{recoverable}", v(func(w http.ResponseWriter, r *http.Request, _ string) {
		d, aerr := s.c.GetRecoverableDatabase(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("recoverable"))
		s.reply(w, r, d, aerr)
	}))
}

// retentionRoutes serves a database's short-term retention policy: GET and list, and PUT and
// PATCH, which Azure answers as long-running operations (202 with the operation's URLs; its
// result is the policy).
func (s *Server) retentionRoutes(rt *arm.Router, v func(h func(w http.ResponseWriter, r *http.Request, ver string)) http.HandlerFunc) {
	rt.Handle("GET", strPath, v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vs, aerr := s.c.ListShortTermRetention(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"))
		s.reply(w, r, listOf(vs), aerr)
	}))
	rt.Handle("GET", strPath+"/{policy}", v(func(w http.ResponseWriter, r *http.Request, _ string) {
		p, aerr := s.c.GetShortTermRetention(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"), r.PathValue("policy"))
		s.reply(w, r, p, aerr)
	}))
	for method, patch := range map[string]bool{"PUT": false, "PATCH": true} {
		rt.Handle(method, strPath+"/{policy}", v(func(w http.ResponseWriter, r *http.Request, ver string) {
			var body resource.ShortTermRetentionBody
			if aerr := decode(r, &body); aerr != nil {
				arm.WriteError(w, aerr)
				return
			}
			op, aerr := s.c.PutShortTermRetention(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"), r.PathValue("policy"), body, patch)
			s.replyOp(w, r, ver, op, aerr)
		}))
	}
}

// writeResource writes the current body of an instance, a database or a database's
// short-term retention policy by ARM id.
func (s *Server) writeResource(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	miID, db, isDB := strings.Cut(id, "/databases/")
	p, err := arm.ParseInstanceID(miID)
	if err != nil {
		arm.WriteError(w, arm.Errorf(http.StatusInternalServerError, "InternalServerError", "operation names a bad resource id"))
		return
	}
	if db, policy, ok := strings.Cut(db, "/backupLongTermRetentionPolicies/"); isDB && ok {
		v, aerr := s.c.GetLongTermRetention(ctx, p.Subscription, p.ResourceGroup, p.Name, db, policy)
		s.reply(w, r, v, aerr)
		return
	}
	if db, policy, ok := strings.Cut(db, "/backupShortTermRetentionPolicies/"); isDB && ok {
		v, aerr := s.c.GetShortTermRetention(ctx, p.Subscription, p.ResourceGroup, p.Name, db, policy)
		s.reply(w, r, v, aerr)
		return
	}
	if isDB {
		v, aerr := s.c.GetDatabase(ctx, p.Subscription, p.ResourceGroup, p.Name, db)
		s.reply(w, r, v, aerr)
		return
	}
	v, aerr := s.c.GetInstance(ctx, p.Subscription, p.ResourceGroup, p.Name)
	s.reply(w, r, v, aerr)
}
