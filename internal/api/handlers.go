package api

import (
	"context"
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

// writeError writes the ARM error a client is told for err (see arm.FromError): here, at
// the edge, the domain's errors become codes, statuses and messages.
func writeError(w http.ResponseWriter, err error) {
	arm.WriteError(w, arm.FromError(err))
}

// reply writes v with 200, or the error.
func reply[T any](w http.ResponseWriter, v T, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	arm.WriteJSON(w, http.StatusOK, v)
}

// replyList writes vs in the list envelope, or the error.
func replyList[T any](w http.ResponseWriter, vs []T, err error) {
	reply(w, list[T]{Value: vs}, err)
}

// replyOp writes the 202 of a started operation, 204 when there was nothing to do, or the error.
func (s *Server) replyOp(w http.ResponseWriter, r *http.Request, ver string, op *controller.Operation, err error) {
	switch {
	case err != nil:
		writeError(w, err)
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
		replyList(w, vs, aerr)
	})
	rt.Handle("GET", "/subscriptions/{sub}/providers/Microsoft.Sql/managedInstances", listInstances)
	rt.Handle("GET", "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances", listInstances)
	rt.Handle("GET", miPath, v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vi, aerr := s.c.GetInstance(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"))
		reply(w, vi, aerr)
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
		replyList(w, vs, aerr)
	}))
	rt.Handle("GET", dbPath, v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vd, aerr := s.c.GetDatabase(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"))
		reply(w, vd, aerr)
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
}

// writeResource writes the current body of an instance or database by ARM id.
func (s *Server) writeResource(w http.ResponseWriter, ctx context.Context, id string) {
	miID, db, isDB := strings.Cut(id, "/databases/")
	p, err := arm.ParseInstanceID(miID)
	if err != nil {
		arm.WriteError(w, arm.Errorf(http.StatusInternalServerError, "InternalServerError", "operation names a bad resource id"))
		return
	}
	if isDB {
		v, aerr := s.c.GetDatabase(ctx, p.Subscription, p.ResourceGroup, p.Name, db)
		reply(w, v, aerr)
		return
	}
	v, aerr := s.c.GetInstance(ctx, p.Subscription, p.ResourceGroup, p.Name)
	reply(w, v, aerr)
}
