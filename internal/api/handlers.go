package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/resource"
)

// list is the ARM list envelope.
type list[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

// check validates api-version and returns it; on failure it has written the error.
func check(w http.ResponseWriter, r *http.Request) (string, bool) {
	v, aerr := InstanceAPIVersions.Check(r)
	if aerr != nil {
		arm.WriteError(w, aerr)
		return "", false
	}
	return v, true
}

func (s *Server) listInstances(w http.ResponseWriter, r *http.Request) {
	if _, ok := check(w, r); !ok {
		return
	}
	v, aerr := s.c.ListInstances(r.Context(), r.PathValue("sub"), r.PathValue("rg"))
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	arm.WriteJSON(w, http.StatusOK, list[resource.InstanceJSON]{Value: v})
}

func (s *Server) getInstance(w http.ResponseWriter, r *http.Request) {
	if _, ok := check(w, r); !ok {
		return
	}
	v, aerr := s.c.GetInstance(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"))
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	arm.WriteJSON(w, http.StatusOK, v)
}

func (s *Server) putInstance(w http.ResponseWriter, r *http.Request) {
	ver, ok := check(w, r)
	if !ok {
		return
	}
	var body resource.InstanceJSON
	if aerr := decode(r, &body); aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	op, aerr := s.c.PutInstance(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), body)
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	s.accepted(w, r, op, ver)
}

func (s *Server) deleteInstance(w http.ResponseWriter, r *http.Request) {
	ver, ok := check(w, r)
	if !ok {
		return
	}
	op, aerr := s.c.DeleteInstance(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"))
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	if op == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.accepted(w, r, op, ver)
}

func (s *Server) listDatabases(w http.ResponseWriter, r *http.Request) {
	if _, ok := check(w, r); !ok {
		return
	}
	v, aerr := s.c.ListDatabases(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"))
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	arm.WriteJSON(w, http.StatusOK, list[resource.DatabaseJSON]{Value: v})
}

func (s *Server) getDatabase(w http.ResponseWriter, r *http.Request) {
	if _, ok := check(w, r); !ok {
		return
	}
	v, aerr := s.c.GetDatabase(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"))
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	arm.WriteJSON(w, http.StatusOK, v)
}

func (s *Server) putDatabase(w http.ResponseWriter, r *http.Request) {
	ver, ok := check(w, r)
	if !ok {
		return
	}
	var body resource.DatabaseJSON
	if aerr := decode(r, &body); aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	op, existing, aerr := s.c.PutDatabase(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"), body)
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	if existing != nil {
		arm.WriteJSON(w, http.StatusOK, existing)
		return
	}
	s.accepted(w, r, op, ver)
}

func (s *Server) deleteDatabase(w http.ResponseWriter, r *http.Request) {
	ver, ok := check(w, r)
	if !ok {
		return
	}
	op, aerr := s.c.DeleteDatabase(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"))
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	if op == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.accepted(w, r, op, ver)
}

// writeResource writes the current body of an instance or database by ARM id.
func (s *Server) writeResource(w http.ResponseWriter, ctx context.Context, id string) {
	miID, db, isDB := strings.Cut(id, "/databases/")
	p, err := arm.ParseInstanceID(miID)
	if err != nil {
		arm.WriteError(w, arm.Errorf(http.StatusInternalServerError, "InternalServerError", "operation names a bad resource id"))
		return
	}
	var v any
	var aerr *arm.Error
	if isDB {
		v, aerr = s.c.GetDatabase(ctx, p.Subscription, p.ResourceGroup, p.Name, db)
	} else {
		v, aerr = s.c.GetInstance(ctx, p.Subscription, p.ResourceGroup, p.Name)
	}
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	arm.WriteJSON(w, http.StatusOK, v)
}
