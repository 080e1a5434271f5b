package arm

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzParseInstanceID: ids parse or are refused; a parsed id has every part.
func FuzzParseInstanceID(f *testing.F) {
	f.Add("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi1")
	f.Add("/SUBSCRIPTIONS/x/resourcegroups/y/providers/microsoft.sql/managedinstances/z/")
	f.Add("//subscriptions//resourceGroups//providers/Microsoft.Sql/managedInstances/")
	f.Fuzz(func(t *testing.T, id string) {
		p, err := ParseInstanceID(id)
		if err == nil && (p.Subscription == "" || p.ResourceGroup == "" || p.Name == "" || strings.Contains(p.Name, "/")) {
			t.Fatalf("%q parsed as %+v", id, p)
		}
	})
}

// FuzzRouter: any path is routed or answered 404/405, never a panic.
func FuzzRouter(f *testing.F) {
	rt := &Router{}
	ok := func(w http.ResponseWriter, r *http.Request) { _ = r.PathValue("name"); w.WriteHeader(http.StatusOK) }
	rt.Handle("GET", "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{name}", ok)
	rt.Handle("POST", "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/locations/{loc}/instanceFailoverGroups/{name}/failover", ok)
	f.Add("GET", "/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/managedInstances/m")
	f.Add("POST", "/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/locations/l/instanceFailoverGroups/g/failover")
	f.Add("DELETE", "/")
	f.Add("GET", "/subscriptions/%2F/x")
	f.Fuzz(func(t *testing.T, method, path string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(method, " \t\r\n") || method == "" {
			return
		}
		req, err := http.NewRequest(method, "https://localhost"+path, nil)
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s answered %d", method, path, w.Code)
		}
	})
}
