package api

import (
	"net/http"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/resource"
)

// GroupAPIVersions are the api-versions accepted for instance failover groups. One schema is
// served; secondaryType is simply absent from what old versions' clients read.
var GroupAPIVersions = arm.APIVersions{
	"2017-10-01-preview", "2020-11-01-preview", "2021-11-01", "2022-05-01-preview",
	"2023-05-01-preview", "2023-08-01", "2023-08-01-preview", "2024-05-01-preview",
	"2024-11-01-preview", "2025-01-01",
}

const fogPath = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/locations/{loc}/instanceFailoverGroups"

func (s *Server) groupRoutes(rt *arm.Router) {
	rt.Handle("GET", fogPath, s.listGroups)
	rt.Handle("PUT", fogPath+"/{name}", s.putGroup)
	rt.Handle("GET", fogPath+"/{name}", s.getGroup)
	rt.Handle("DELETE", fogPath+"/{name}", s.deleteGroup)
	rt.Handle("POST", fogPath+"/{name}/failover", s.failover(false))
	rt.Handle("POST", fogPath+"/{name}/forceFailoverAllowDataLoss", s.failover(true))
	rt.Handle("GET", opBase+"instanceFailoverGroupAzureAsyncOperation/{op}", s.operationStatus)
	rt.Handle("GET", opBase+"instanceFailoverGroupOperationResults/{op}", s.operationResult)
}

func checkGroup(w http.ResponseWriter, r *http.Request) (string, bool) {
	v, aerr := GroupAPIVersions.Check(r)
	if aerr != nil {
		arm.WriteError(w, aerr)
		return "", false
	}
	return v, true
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	if _, ok := checkGroup(w, r); !ok {
		return
	}
	v, aerr := s.c.ListFailoverGroups(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("loc"))
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	arm.WriteJSON(w, http.StatusOK, list[resource.FailoverGroupJSON]{Value: v})
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	if _, ok := checkGroup(w, r); !ok {
		return
	}
	v, aerr := s.c.GetFailoverGroup(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("loc"), r.PathValue("name"))
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	arm.WriteJSON(w, http.StatusOK, v)
}

func (s *Server) putGroup(w http.ResponseWriter, r *http.Request) {
	ver, ok := checkGroup(w, r)
	if !ok {
		return
	}
	var body resource.FailoverGroupJSON
	if aerr := decode(r, &body); aerr != nil {
		aerr.Code = "InstanceFailoverGroupCreateOrUpdateRequestInvalid"
		arm.WriteError(w, aerr)
		return
	}
	op, aerr := s.c.PutFailoverGroup(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("loc"), r.PathValue("name"), body)
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	s.accepted(w, r, op, ver)
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) {
	ver, ok := checkGroup(w, r)
	if !ok {
		return
	}
	op, aerr := s.c.DeleteFailoverGroup(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("loc"), r.PathValue("name"))
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

func (s *Server) failover(force bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ver, ok := checkGroup(w, r)
		if !ok {
			return
		}
		op, aerr := s.c.Failover(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("loc"), r.PathValue("name"), force)
		if aerr != nil {
			arm.WriteError(w, aerr)
			return
		}
		s.accepted(w, r, op, ver)
	}
}
