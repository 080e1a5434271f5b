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
	v := func(h func(w http.ResponseWriter, r *http.Request, ver string)) http.HandlerFunc {
		return versioned(GroupAPIVersions, h)
	}
	addr := func(r *http.Request) (string, string, string, string) {
		return r.PathValue("sub"), r.PathValue("rg"), r.PathValue("loc"), r.PathValue("name")
	}
	rt.Handle("GET", fogPath, v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vs, aerr := s.c.ListFailoverGroups(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("loc"))
		s.reply(w, r, listOf(vs), aerr)
	}))
	rt.Handle("GET", fogPath+"/{name}", v(func(w http.ResponseWriter, r *http.Request, _ string) {
		sub, rg, loc, name := addr(r)
		vg, aerr := s.c.GetFailoverGroup(r.Context(), sub, rg, loc, name)
		s.reply(w, r, vg, aerr)
	}))
	rt.Handle("PUT", fogPath+"/{name}", v(func(w http.ResponseWriter, r *http.Request, ver string) {
		var body resource.FailoverGroupJSON
		if aerr := decode(r, &body); aerr != nil {
			if aerr.Status == http.StatusBadRequest {
				aerr.Code = "InstanceFailoverGroupCreateOrUpdateRequestInvalid"
			}
			arm.WriteError(w, aerr)
			return
		}
		sub, rg, loc, name := addr(r)
		op, aerr := s.c.PutFailoverGroup(r.Context(), sub, rg, loc, name, body)
		s.replyOp(w, r, ver, op, aerr)
	}))
	rt.Handle("DELETE", fogPath+"/{name}", v(func(w http.ResponseWriter, r *http.Request, ver string) {
		sub, rg, loc, name := addr(r)
		op, aerr := s.c.DeleteFailoverGroup(r.Context(), sub, rg, loc, name)
		s.replyOp(w, r, ver, op, aerr)
	}))
	for action, force := range map[string]bool{"failover": false, "forceFailoverAllowDataLoss": true} {
		rt.Handle("POST", fogPath+"/{name}/"+action, v(func(w http.ResponseWriter, r *http.Request, ver string) {
			sub, rg, loc, name := addr(r)
			op, aerr := s.c.Failover(r.Context(), sub, rg, loc, name, force)
			s.replyOp(w, r, ver, op, aerr)
		}))
	}
	rt.Handle("GET", opBase+"instanceFailoverGroupAzureAsyncOperation/{op}", s.operationStatus)
	rt.Handle("GET", opBase+"instanceFailoverGroupOperationResults/{op}", s.operationResult)
}
